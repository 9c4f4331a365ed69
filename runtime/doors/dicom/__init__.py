"""DICOM in and out of the runtime: results of a run (`seg`, `capture`, `results`), the job that says what
to write and send (`job`), sending (`net`: C-STORE, STOW-RS) and listening (`listener`: the storage SCP).
DICOM sources themselves are read by the core's `llm4seg.dicom`."""
