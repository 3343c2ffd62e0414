"""The SDXL pipeline: regional cross-attention on the UNet, DPM++ 2M Karras, tiny components."""
