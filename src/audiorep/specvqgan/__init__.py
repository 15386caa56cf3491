"""SpecVQGAN (Iashin & Rahtu, BMVC 2021): reserved home, not implemented yet (issues 13-15).

Planned layout (docs/architecture.md, "Layers": ``specvqgan`` sits above ``fad`` and
``evaluation`` and below ``cli``):

* ``codec.py``, ``quantizer.py``: the spectrogram VQGAN and its codebook;
* ``vocoder.py``: MelGAN;
* ``transformer.py``: the visually guided code transformer and sampling;
* ``training.py``: their loops, on the shared training plumbing;
* ``evaluate.py``: FID / MKL / IS / KID with the Melception and VGGish-ish judges.

The 22.05 kHz mel front end goes to ``frontends/``, the two spectrogram classifiers
(VGGish-ish, Melception) to ``models/`` as tapped models with bundles in ``pipelines/``.
"""
