"""Tools around the frame runtime: `bench` (latency, throughput, agreement), `bench_streams`
(concurrent streams) and `adopt` (`llm4seg adopt-engine`)."""
