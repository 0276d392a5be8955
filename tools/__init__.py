"""Host-side tools: serial protocol client, device runners, QEMU launcher, benchmarks."""
