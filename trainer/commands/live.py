"""`trainer live`: audio streaming in, generated video streaming out in real time (to an mp4 and/or a local page)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.cli import ShortFlag, add_size_argument, config_or_exit, fail, resolved_or_exit
from trainer.models import LIVE_PREFERENCE, add_model_arguments, add_model_config_args, resolve_model, sampling_flags
from shared.errors import SynestheteError, one_line
from shared.video import VideoError

NAME = "live"
HELP = ("Generate video live as audio arrives: from a file at real-time pace, from stdin in any format, or "
        "from a capture device; record it to an mp4 and/or watch it on a local page.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", metavar="FILE|-",
                     help="Audio file played at real-time pace, or - for stdin in any format ffmpeg decodes "
                          "(consumed as it arrives: a fast pipe runs faster than real time, a live pipe paces "
                          "itself; closing stdin ends the stream).")
    src.add_argument("--input-device", metavar="DEVICE", nargs="?", const="",
                     help="Capture from an audio input device (index or name; none given: the default device). "
                          "Needs the optional sounddevice package and PortAudio (the tests drive it through a fake "
                          "sounddevice module: CI machines have no capture device). Ctrl-C ends the stream.")
    parser.add_argument("--no-realtime", action="store_true",
                        help="Flat out: read the file as fast as frames are made, and never degrade or drop "
                             "(every snippet at the full steps). For recording: frames come faster than real time.")
    parser.add_argument("--out", default=None, metavar="FILE.mp4",
                        help="Record the stream (dropped frames as the repeated frames shown) with the audio muxed in.")
    add_size_argument(parser, "the --out mp4 (scaled when the stream ends; the --serve page scales in the browser)")
    parser.add_argument("--serve", default=None, metavar="[HOST:]PORT",
                        help="Serve a page with the live video, latency/fps/dropped counters and (for a file) "
                             "its audio in sync. HOST defaults to 127.0.0.1 (loopback only).")
    parser.add_argument("--no-wait", action="store_true",
                        help="With --serve and a file at real-time pace: start at once instead of waiting for the "
                             "first page to connect (so the page sees the song from its start).")
    parser.add_argument("--exit-at-end", action="store_true",
                        help="With --serve: exit when the stream ends (default: when the audio ends, keep the page up "
                             "until Ctrl-C; a Ctrl-C during the stream ends it and exits at once).")
    default = add_model_arguments(parser, prefer=LIVE_PREFERENCE)  # the shipped live model has no look-ahead
    parser.add_argument("--summary", default=None, metavar="FILE.json",
                        help="Write the run's figures (frames, dropped, latency, speed vs real time; with --out the "
                             "recording's AV offset in ms, + = picture late) as JSON.")
    add_model_config_args(parser, default, [
        *sampling_flags("Noise and style seed.", "Sampling steps per snippet (the most; fewer when behind)."),
        ShortFlag("--stall", "inference.live_stall_s", float, "Seconds without audio before the page says so.")])


def run(args: argparse.Namespace) -> int:
    ckpt = resolved_or_exit(args, lambda: resolve_model(args.checkpoint, args.model, prefer=LIVE_PREFERENCE))
    if args.audio not in (None, "-") and not args.dry_run:
        audio = Path(args.audio)
        if not audio.is_file():
            fail(f"audio file {str(audio)!r}: " + ("not a regular file" if audio.exists() else "not found"))
        if args.out and Path(args.out).resolve() == audio.resolve():
            fail(f"--out {args.out!r} would overwrite the input audio")
    if args.exit_at_end and not args.serve:
        fail("--exit-at-end only applies with --serve")
    try:
        from trainer.live.server import parse_serve

        serve = parse_serve(args.serve) if args.serve else None
        summary = _run(args, ckpt, serve)
    except SynestheteError as e:  # bad input: one line, exit 2; anything else keeps its traceback
        fail(one_line(e))
    except VideoError as e:  # ffmpeg refusing the --out file (as datagen preview/visualize report it)
        fail(one_line(e))
    print(f"live: {summary['frames']} frames ({summary['audio_s']:.2f} s of audio at {summary['fps']:g} fps) in "
          f"{summary['wall_s']:.1f} s = {summary['speed_x_realtime']:.2f}x real time; dropped {summary['dropped']}, "
          f"latency mean {1000 * summary['latency_mean_s']:.0f} ms (p95 {1000 * summary['latency_p95_s']:.0f} ms, "
          f"look-ahead {summary['lookahead_frames']} frames)" + (f"; wrote {args.out}" if args.out else "")
          + offset_line(summary.get("av_offset")),
          file=sys.stderr)
    return 0


def offset_line(o: dict | None) -> str:
    """The summary's AV offset as a clause of the closing line ("" without a recording)."""
    if not o or o.get("ms") is None:
        return ""
    chance = f", chance {o['chance_peak']:.3f}" if o.get("chance_peak") is not None else ""
    return f"; AV offset {o['ms']:+.0f} ms (peak {o['peak']:.3f}{chance}; + = picture late)"


def _run(args: argparse.Namespace, ckpt: Path, serve: tuple[str, int] | None) -> dict:
    import torch

    from shared.audio_io import load_audio
    from shared.fsutil import atomic_write_json
    from trainer.live.generator import SnippetGenerator, live_spec
    from trainer.live.scheduler import LiveScheduler
    from trainer.live.sources import DeviceSource, FileSource, PipeSource, RealClock
    from trainer.runtime import pick_device
    from trainer.sample import SampleError, load_sampling_model, style_for_seed

    model = load_sampling_model(ckpt, "cpu", overrides=lambda saved: config_or_exit(args, base=saved))
    model.to(pick_device(model.cfg.run.device))
    cfg = model.cfg
    sr, fps, res = cfg.data.sample_rate, cfg.render.fps, cfg.render.resolution
    clock = RealClock()
    wave = None
    if args.audio == "-":
        source, realtime = PipeSource(sys.stdin.buffer, sr, clock), not args.no_realtime
    elif args.audio is not None:
        wave, _ = load_audio(args.audio, sr)  # AudioLoadError: an AudioError, one line at the command
        source, realtime = FileSource(wave, sr, clock, realtime=not args.no_realtime), not args.no_realtime
    else:
        source, realtime = DeviceSource(args.input_device or None, sr, clock), True

    from trainer.live.features import causal_channel_names, live_timeline

    tcfg, channels = live_timeline(cfg)  # without the beat tracker when the model takes no beat channel
    n_ch = len(channels) if channels is not None else len(causal_channel_names(tcfg))
    if n_ch != model.denoiser.n_audio_channels:
        raise SampleError(f"checkpoint {ckpt}: the model takes {model.denoiser.n_audio_channels} audio channels, "
                          f"the live timeline gives {n_ch}")
    spec = live_spec(model)
    inf = cfg.inference
    gen = SnippetGenerator(model, spec, style_for_seed(cfg, inf.seed), inf.seed)
    print(f"live: {ckpt} at {res} px, {fps:g} fps, snippets of {gen.snippet_frames} frames, look-ahead "
          f"{gen.lookahead} frames ({1000 * gen.lookahead / fps:.0f} ms) before compute"
          + ("" if gen.lookahead == 0 else " (this model is not causal: its windows and snippets see ahead)"),
          file=sys.stderr)
    sinks = []
    server = recorder = None
    try:
        if serve is not None:
            from trainer.live.server import LiveServer

            server = LiveServer(serve[0], serve[1], fps, res, (wave, sr) if wave is not None else None,
                                inf.live_stall_s, info={"lookahead_frames": gen.lookahead}).start()
            sinks.append(server)
            print(f"live: serving {server.url}", file=sys.stderr, flush=True)
            if wave is not None and realtime and not args.no_wait:
                print(f"live: open {server.url} to start (or pass --no-wait)", file=sys.stderr, flush=True)
                server.client_connected.wait()
        if args.out:
            from shared.video import view_size
            from trainer.live.recorder import Recorder

            px = view_size(res, args.size)
            recorder = Recorder(args.out, fps, res, res, sr, out_size=(px, px))
            sinks.append(recorder)
        with torch.no_grad():
            sched = LiveScheduler(source, gen, sinks, clock, sr, fps, tcfg, realtime=realtime,
                                  min_steps=inf.live_min_steps, stall_s=inf.live_stall_s, channels=channels)
            summary = sched.run()
        if recorder is not None:  # closed by the scheduler, which measured the recording's AV offset
            summary["av_offset"] = recorder.av_offset
        recorder = None
        if args.summary:
            atomic_write_json(args.summary, summary, indent=2)
        if server is not None and not args.exit_at_end and not sched.interrupted:  # Ctrl-C ended it: exit now
            print("live: stream ended; the page stays up until Ctrl-C", file=sys.stderr, flush=True)
            try:
                while True:
                    clock.sleep(3600)
            except KeyboardInterrupt:
                pass
        return summary
    finally:
        if recorder is not None:
            recorder.abort()
        if server is not None:
            server.shutdown()
        close = getattr(source, "close", None)
        if close is not None:
            close()
