"""Speed and memory of FEC against its dense formulation and ResNet-50 (``tools/benchmark.py``)
and the prepared GPU check (``tools/gpu_check.sh``).

* :mod:`.cases`: the models (FEC backbones, the dense formulation, ResNet-50 as detectors
  use it and fully trained, the detector and segmentor of ``configs/``) and one step of each;
* :mod:`.memory`: peak memory and the load other processes put on the machine;
* :mod:`.runner`: running cases, each in a fresh process or in this one;
* :mod:`.report`: ratios, targets and the markdown tables;
* :mod:`.gpu_check`: exactness, mixed precision, speed and ``torch.compile`` on CUDA.

Only torch, mmengine and mmcv (its pure-Python part) are needed for the backbones; mmdet
and mmseg only for the detector/segmentor rows (and mmdet's ResNet, with torchvision's as
the fallback where mmdet is not installed).
"""
