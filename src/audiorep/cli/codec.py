"""``audiorep codec encode | decode | reconstruct``: SpecVQGAN as a neural audio codec.

The work is done by :mod:`audiorep.specvqgan.codec` (files, grids, bitrate) and
:mod:`audiorep.specvqgan.codec_models` (which codec / vocoder); this module parses and reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audiorep.cli.common import (
    EXIT_SOME_FAILED,
    add_device_option,
    add_max_seconds_option,
    apply_max_seconds,
    display,
    fail,
)

CODEC_HELP = (
    "codec: 'small' (default, shipped), our codec.safetensors, an authors' .ckpt / logdir / "
    ".tar.gz, or a registry name (specvqgan-codebook-vas, specvqgan-codebook-vggsound)"
)
VOCODER_HELP = (
    "vocoder: 'small' (default, shipped), 'griffin-lim', our vocoder.safetensors, an authors' "
    "best_netG.pt (args.yml beside it) or 'specvqgan-melgan'"
)


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "codec",
        help="SpecVQGAN neural audio codec: audio -> codes (~0.2-0.3 kbps) -> audio",
        description="Run `audiorep codec SUBCOMMAND --help` for each subcommand.",
    )
    sub = group.add_subparsers(dest="codec_command", metavar="SUBCOMMAND")
    enc = sub.add_parser(
        "encode",
        help="audio files -> .codes files",
        description="Encode audio files (any format, rate and length; mixed to mono and "
        "resampled exactly to 22050 Hz) to <OUT>/<name>.codes: the 5 x ceil(T/16) code grid, "
        "bit-packed, plus what decoding needs. Prints the bitrate "
        "(ceil(log2 n_codes) bits x codes / seconds / 1000 kbps).",
    )
    enc.add_argument("inputs", nargs="+", metavar="AUDIO")
    _common(enc, vocoder=False)
    dec = sub.add_parser(
        "decode",
        help=".codes files -> WAV",
        description="Decode .codes files to <OUT>/<name>.wav (22050 Hz, or --sample-rate).",
    )
    dec.add_argument("inputs", nargs="+", metavar="CODES")
    _common(dec, vocoder=True)
    rec = sub.add_parser(
        "reconstruct",
        help="audio -> codes -> audio in one go",
        description="Encode and decode: writes <name>.codes and <name>.wav (and with --plot a "
        "PNG comparing the original and reconstructed spectrograms).",
    )
    rec.add_argument("inputs", nargs="+", metavar="AUDIO")
    _common(rec, vocoder=True)
    rec.add_argument("--plot", action="store_true", help="also write <name>.png (matplotlib)")
    for p in (enc, dec, rec):
        p.set_defaults(func=run)

    def usage(_: argparse.Namespace) -> int:
        group.print_help(sys.stderr)
        return 2

    group.set_defaults(func=usage)


def _common(p: argparse.ArgumentParser, *, vocoder: bool) -> None:
    p.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="output folder")
    p.add_argument("--codec", default="small", help=CODEC_HELP)
    if vocoder:
        p.add_argument("--vocoder", default="small", help=VOCODER_HELP)
        p.add_argument(
            "--sample-rate",
            type=int,
            default=None,
            help="resample the output to this rate in Hz (default 22050; 0: the input's own rate)",
        )
    p.add_argument("--json", action="store_true", help="print one JSON line per file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_option(p)
    add_max_seconds_option(p)


def _write_wav(path: Path, wave: Any, rate: int | None, source_rate: int) -> int:
    """Write 16-bit PCM at ``rate`` (None: 22050; 0: the source's rate), atomically."""
    import os

    import soundfile as sf
    import torch

    from audiorep.atomic import commit, make_temp
    from audiorep.resample import resample

    out_rate = 22050 if rate is None else (source_rate if rate == 0 else rate)
    if out_rate != 22050:
        wave = resample(wave.to(torch.float64), 22050, out_rate).to(torch.float32)
    fd, tmp = make_temp(path.parent, f".{path.stem}.", ".wav")
    os.close(fd)
    sf.write(tmp, wave.clamp(-1, 1).numpy(), out_rate, subtype="PCM_16")
    commit(tmp, path)
    return out_rate


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from audiorep.audio import AudioLoadError
    from audiorep.specvqgan.codec import (
        CodeFile,
        CodeFileError,
        check_codec_matches,
        decode_codes,
        encode_file,
        mel_to_audio,
        plot_comparison,
    )
    from audiorep.specvqgan.codec_models import load_codec, load_vocoder

    command = f"codec {args.codec_command}"
    try:
        apply_max_seconds(args)
        codec, codec_name = load_codec(args.codec, args.device)
        vocoder, vocoder_name = (None, "")
        if args.codec_command != "encode":
            vocoder, vocoder_name = load_vocoder(args.vocoder, args.device)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return fail(command, exc)
    if args.codec_command == "reconstruct" and args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return fail(command, "--plot needs matplotlib (pip install matplotlib)")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    bar = tqdm(args.inputs, desc=args.codec_command, unit="file", disable=args.no_progress)
    for item in bar:
        src = Path(item)
        try:
            report: dict[str, Any] = {"input": str(src)}
            if args.codec_command == "decode":
                cf = CodeFile.load(src)
                check_codec_matches(cf, codec, str(src))
                mel = None
            else:
                cf, mel = encode_file(codec, src, name=codec_name)
                cf.save(out / f"{src.stem}.codes")
                report["codes"] = str(out / f"{src.stem}.codes")
            report.update(
                seconds=round(cf.seconds, 3),
                grid=list(cf.codes.shape),
                n_codes=cf.n_codes,
                bits_per_code=cf.bits,
                kbps=round(cf.kbps, 4),
                bytes=len(cf.to_bytes()),
            )
            if args.codec_command != "encode":
                import torch

                rebuilt = decode_codes(codec, torch.from_numpy(cf.codes), cf.frames)
                wave = mel_to_audio(rebuilt, vocoder)
                wav_path = out / f"{src.stem}.wav"
                rate = _write_wav(wav_path, wave, args.sample_rate, cf.source_rate)
                report.update(wav=str(wav_path), sample_rate=rate, vocoder=vocoder_name)
                if mel is not None:
                    report["mel_l1"] = round(float((rebuilt - mel).abs().mean()), 5)
                    if getattr(args, "plot", False):
                        png = out / f"{src.stem}.png"
                        title = f"{src.name}: {cf.kbps:.3f} kbps, mel L1 {report['mel_l1']:.4f}"
                        plot_comparison(png, mel, rebuilt, title)
                        report["plot"] = str(png)
        except (AudioLoadError, CodeFileError, OSError, ValueError, RuntimeError) as exc:
            failed += 1
            print(display(f"audiorep {command}: {src}: {exc}"), file=sys.stderr)
            continue
        if args.json:
            tqdm.write(json.dumps(report))
        else:
            extra = f", mel L1 {report['mel_l1']:.4f}" if "mel_l1" in report else ""
            tqdm.write(
                display(
                    f"{src}: {report['seconds']:.2f} s -> {report['grid'][0]}x{report['grid'][1]} "
                    f"codes x {report['bits_per_code']} bits = {report['kbps']:.3f} kbps "
                    f"({report['bytes']} bytes){extra}"
                )
            )
    return EXIT_SOME_FAILED if failed else 0
