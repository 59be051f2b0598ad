"""What the engine learns of the machine and the llama.cpp build it runs on, apart from serving: devices
and GPU offload, the build's identity, weight repacking and its probe, OpenMP's threads, llama.cpp's log,
and quantizing a model file."""
