"""SpecVQGAN (Iashin & Rahtu, BMVC 2021): its data, judges' evaluation, codec and generator.

Layout (docs/architecture.md, "Layers": ``specvqgan`` sits above ``fad`` and ``evaluation``
and below ``cli``):

* ``mels.py``: a folder of audio or video -> the authors' ``melspec_10s_22050hz`` layout;
* ``evaluate.py``: FID / MKL / IS / KID with the Melception judge;
* ``classifier_data.py``, ``classifier_training.py``: training either judge on any labelled
  folder, CSV, VGGSound or VAS layout (the authors' recipe, resumable via ``training/``);
* ``audio_corpus.py``: training audio (recordings, list files with time regions, codec mel
  crops, the authors' MelGAN wave crops; batches pure in ``(seed, step, rank)``);
* ``griffin_lim.py``: a waveform from the authors' [0, 1] mel without a vocoder;
* ``codec.py``: the neural audio codec (file -> code grid -> waveform, ``.codes`` files,
  bitrate); ``codec_models.py``: ``load_codec`` / ``load_vocoder`` from the shipped small
  models, our files, the authors' checkpoints or registry names;
* ``codec_training.py``, ``vocoder_training.py``: the codec and MelGAN training loops;
* the transformer and its training: issue 15.

The 22.05 kHz mel front end is in ``frontends/specvqgan.py``; the two spectrogram classifiers
(VGGish-ish, Melception) are tapped models in ``models/``; LPAPS is in ``losses/lpaps.py``.
The codec, its patch-GAN and the MelGAN are ``models/vqgan.py``, ``models/patchgan.py`` and
``models/melgan.py`` (losses in ``losses/vqgan.py``, ``losses/melgan.py``; the authors' files
in ``convert/lightning.py``, ``convert/archive.py``, ``convert/melgan.py``); see docs/codec.md.
"""
