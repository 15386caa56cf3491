"""SpecVQGAN (Iashin & Rahtu, BMVC 2021): its data, judges' evaluation, codec and generator.

Layout (docs/architecture.md, "Layers": ``specvqgan`` sits above ``fad`` and ``evaluation``
and below ``cli``):

* ``mels.py``: a folder of audio or video -> the authors' ``melspec_10s_22050hz`` layout;
* ``evaluate.py``: FID / MKL / IS / KID with the Melception judge;
* ``classifier_data.py``, ``classifier_training.py``: training either judge on any labelled
  folder, CSV, VGGSound or VAS layout (the authors' recipe, resumable via ``training/``);
* codec, vocoder, transformer and their training loops: issues 14-15.

The 22.05 kHz mel front end is in ``frontends/specvqgan.py``; the two spectrogram classifiers
(VGGish-ish, Melception) are tapped models in ``models/``; LPAPS is in ``losses/lpaps.py``.
"""
