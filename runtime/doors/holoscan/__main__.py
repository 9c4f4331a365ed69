"""`python -m llm4seg.runtime.doors.holoscan APP.yaml [--json]`: run the example application."""

from llm4seg.runtime.doors.holoscan.app import main

if __name__ == "__main__":
    raise SystemExit(main())
