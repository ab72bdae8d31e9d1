"""The ``soundformer`` command: argv -> config objects -> one call per subcommand.

User errors (``SoundformerError``) become one message on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import SoundformerError

DATA_ENV = "SOUNDFORMER_DATA"
EPILOG_DATA = (
    "--data defaults to ESC-10 in the user cache ($SOUNDFORMER_DATA, else "
    "~/.cache/soundformer/datasets/esc10), downloaded on first use."
)


def default_data_dir() -> Path:
    from .data.audio import cache_root

    return Path(os.environ.get(DATA_ENV) or cache_root() / "datasets" / "esc10")


def resolve_data(arg: str | None, log=print) -> Path:
    if arg:
        return Path(arg).expanduser()
    path = default_data_dir()
    if not path.exists():
        from .data.download import download

        log(f"no --data given and {path} is empty: downloading ESC-10 there (one time)")
        download("esc10", path.parent, name=path.name)
    return path


# --------------------------------------------------------------------------- arguments


def _add_config_args(p: argparse.ArgumentParser, preset_default: str | None = "logmel-transformer") -> None:
    p.add_argument("--preset", default=preset_default,
                   help="model preset name or a YAML file (see `soundformer presets`); default: %(default)s")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="data set folder or CSV manifest (default: ESC-10 in the user cache)")
    p.add_argument("--format", default=None,
                   choices=["auto", "esc50", "esc10", "folder", "csv", "urbansound8k"],
                   help="force a data layout instead of auto-detecting it")
    p.add_argument("--subset", default=None, choices=["esc10"], help="ESC-50 layout: keep only the ESC-10 classes")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override train.device")
    p.add_argument("--tracker", choices=["local", "tensorboard", "wandb"], help="override train.tracker")
    p.add_argument("--skip-bad", action="store_true", help="train without unreadable audio files (listed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars; a log line every 10 epochs")


def _add_launcher_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--launcher", choices=["local", "ray"], default="local",
                   help="local: --jobs processes here; ray: a Ray cluster (pip install 'soundformer[ray]')")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")


def _config_from_args(args) -> Config:  # noqa: F821
    from .config import load_config

    # cv and sweep name a protocol: the preset's settings for it (if any) apply under the overrides
    return load_config(args.preset, _overrides_from_args(args), protocol=getattr(args, "protocol", None))


def _overrides_from_args(args) -> list[str]:
    """``--set`` items plus the shortcut flags (--epochs, --seed, ...) as ``key=value`` items."""
    overrides = list(args.overrides)
    for flag, key in (("epochs", "train.epochs"), ("seed", "train.seed"), ("device", "train.device"),
                      ("tracker", "train.tracker"), ("format", "data.format"), ("subset", "data.subset")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "skip_bad", False):
        overrides.append("data.skip_bad=true")
    return overrides


def _say_protocol_settings(args) -> None:
    """One line naming what the preset sets for this protocol, so a run's epochs never surprise."""
    from .config import protocol_settings

    changes = protocol_settings(args.preset, _overrides_from_args(args)).get(args.protocol)
    if changes:
        listed = ", ".join(f"{k}={v}" for k, v in changes.items())
        print(f"{args.preset}: under the {args.protocol} protocol this preset sets {listed} (--set wins)")


def _config_and_data(args):
    """Config from the flags, the resolved data path (recorded in the config) and its manifest."""
    cfg = _config_from_args(args)
    data_path = resolve_data(args.data)
    cfg.data.path = str(data_path.resolve())
    return cfg, data_path, _manifest(cfg, data_path)


def _manifest(cfg, data_path: Path):
    from .data.sources import load_manifest

    d = cfg.data
    return load_manifest(data_path, format=d.format, subset=d.subset, k_folds=d.k_folds,
                         split_seed=d.split_seed, allow_outside_root=d.allow_outside_root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundformer",
        description="Train, compare and understand audio classifiers; the centre is a transformer "
                    "written from scratch in PyTorch.",
        epilog="Run `soundformer COMMAND --help` for each command. " + EPILOG_DATA,
    )
    parser.add_argument("--version", action="version", version=f"soundformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # data
    p_data = sub.add_parser("data", help="inspect or download data sets")
    data_sub = p_data.add_subparsers(dest="data_command", metavar="ACTION")
    p_info = data_sub.add_parser("info", help="counts per class and fold, durations, rates, bad files",
                                 epilog=EPILOG_DATA)
    _add_data_args(p_info)
    p_info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p_dl = data_sub.add_parser("download", help="download ESC-50 or ESC-10 (official archives)")
    p_dl.add_argument("dataset", choices=["esc50", "esc10"])
    p_dl.add_argument("--dest", required=True, help="folder to put the data set in")
    p_dl.add_argument("--url", help="download from this address instead of the official archive")
    p_dl.add_argument("--sha256", help="expected SHA-256 of the archive")

    # presets / summary
    p_pre = sub.add_parser("presets", help="list the model presets, or print one's settings",
                           description="Without a name: one line per preset. With a name (or a YAML file): "
                                       "its resolved settings as YAML, each with what it means; --set "
                                       "overrides apply, so this shows what a run would use.")
    p_pre.add_argument("preset", nargs="?", help="preset name or YAML file to print in full")
    p_pre.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value (repeatable)")
    p_pre.add_argument("--protocol", choices=["report", "standard"],
                       help="the settings `cv`/`sweep` use under this protocol (a preset may set some per "
                            "protocol, e.g. more epochs when a whole fold validates); default: the preset's own")
    p_sum = sub.add_parser("summary", help="parameters and multiply-accumulates of a preset")
    _add_config_args(p_sum)
    p_sum.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")
    p_sum.add_argument("--layers", action="store_true", help="also print the module tree")

    # train
    p_train = sub.add_parser("train", help="train one model on one fold split", epilog=EPILOG_DATA)
    _add_config_args(p_train)
    _add_data_args(p_train)
    p_train.add_argument("--test-fold", type=int, help="fold held out for testing (default: the last fold)")
    p_train.add_argument("--val-fold", type=int,
                         help="fold used for validation (default: a slice of the training folds)")
    p_train.add_argument("--out", required=True, help="run folder to create")
    p_train.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p_train.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    _add_run_args(p_train)

    # cv
    p_cv = sub.add_parser("cv", help="cross-validate a preset (report or standard protocol)", epilog=EPILOG_DATA)
    _add_config_args(p_cv)
    _add_data_args(p_cv)
    p_cv.add_argument("--protocol", choices=["report", "standard"], default="standard",
                      help="report: 4-fold CV on folds 1-4 + test on fold 5; standard: 5-fold "
                           "leave-one-out (default: %(default)s)")
    p_cv.add_argument("--test-fold", type=int, help="report protocol: held-out fold (default: last)")
    p_cv.add_argument("--out", required=True, help="folder for the runs (finished jobs are skipped)")
    p_cv.add_argument("--jobs", type=int, default=1, help="parallel jobs (threads split between them)")
    _add_launcher_args(p_cv)
    _add_run_args(p_cv)

    # sweep
    p_sw = sub.add_parser("sweep", help="grid over config keys, each point cross-validated, ranked by validation",
                          epilog="Example: soundformer sweep --preset logmel-transformer --grid train.lr=1e-3,3e-4 "
                                 "--grid model.depth=2,4 --out runs/sweep. " + EPILOG_DATA)
    _add_config_args(p_sw)
    _add_data_args(p_sw)
    p_sw.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                      help="a config key and its values (repeatable: the grid is their product)")
    p_sw.add_argument("--protocol", choices=["report", "standard"], default="standard")
    p_sw.add_argument("--out", required=True)
    p_sw.add_argument("--jobs", type=int, default=1)
    _add_launcher_args(p_sw)
    _add_run_args(p_sw)

    # report
    p_rep = sub.add_parser("report", help="HTML/Markdown/JSON report from run or cv folders")
    p_rep.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders or cv folders (one per model)")
    p_rep.add_argument("--out", required=True, help="folder for report.html, report.md, results.json")
    p_rep.add_argument("--data", help="data set for the data section (default: the one the runs used)")
    p_rep.add_argument("--title", default="soundformer report")

    # study
    p_st = sub.add_parser("study", help="the report's experiments end to end, then the report",
                          epilog="Models: seed-cnn, seed-transformer-h1/h2/h4, logmel-cnn, logmel-transformer; "
                                 "report protocol. Re-running continues where a killed study stopped. " + EPILOG_DATA)
    _add_data_args(p_st)
    p_st.add_argument("--out", required=True, help="study folder (one sub-folder per model, report/ at the end)")
    p_st.add_argument("--budget", choices=["quick", "full"], default="quick",
                      help="quick: minutes on a laptop CPU (few epochs, seed transformer shrunk, labelled); "
                           "full: the presets as they are, with their settings for the report protocol (default: %(default)s)")
    p_st.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value for every model")
    p_st.add_argument("--jobs", type=int, default=1, help="parallel jobs (threads split between them)")
    _add_launcher_args(p_st)
    p_st.add_argument("--quiet", action="store_true", help="no progress bars")

    # predict / embed / export
    p_pred = sub.add_parser("predict", help="classify audio files or folders with a trained model",
                            epilog="JSON output: a list of {path, label, top_k: [{class, probability}], "
                                   "probabilities: {class: p}, duration_s[, windows: [{start_s, end_s, label, "
                                   "probability}]]}, or {path, error} for a file that failed.")
    p_pred.add_argument("--checkpoint", required=True, help="a run's checkpoints/model.pt")
    p_pred.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (recursed)")
    p_pred.add_argument("--top-k", type=int, default=3, help="classes to show per file (default: %(default)s)")
    p_pred.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p_pred.add_argument("--windows", action="store_true", help="also show the per-window timeline")
    p_pred.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p_pred.add_argument("--eval-crops", type=int, default=None, metavar="N",
                        help="average each window with N evenly spaced crops of the training crop's length "
                             "(0 = whole windows only; default: the model's train.eval_crops)")
    p_emb = sub.add_parser("embed", help="clip embeddings (CLS representation) for folders of audio")
    p_emb.add_argument("--checkpoint", required=True)
    p_emb.add_argument("paths", nargs="+", metavar="PATH")
    p_emb.add_argument("--out", required=True, help="output .npz: paths, embeddings (N, D), labels")
    p_exp = sub.add_parser("export", help="export a trained model to ONNX or TorchScript",
                           epilog="Input: float32 waveform (batch, samples) at the model's sample rate; output: "
                                  "logits. A JSON file beside the model lists classes and sample rate.")
    p_exp.add_argument("--checkpoint", required=True)
    p_exp.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p_exp.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    return parser


# --------------------------------------------------------------------------- commands


def cmd_presets(args) -> int:
    from .config import annotated_yaml, load_config, preset_names, protocols_yaml

    if args.preset:
        print(annotated_yaml(load_config(args.preset, args.overrides, protocol=args.protocol)), end="")
        if args.protocol is None:
            print(protocols_yaml(args.preset, args.overrides), end="")
        return 0
    for name in preset_names():
        print(f"{name:22s} {load_config(name).description}")
    return 0


def cmd_summary(args) -> int:
    from .models import build_model, count_macs, count_parameters
    from .train import window_samples

    cfg = _config_from_args(args)
    model = build_model(cfg, args.classes)
    trainable, frozen = count_parameters(model)
    window = window_samples(cfg)
    windows_per_clip = max(1, round(5.0 / cfg.audio.window_seconds))
    macs = count_macs(model, window) * windows_per_clip
    f = cfg.features
    if cfg.model.ensemble:
        front_end = f"ensemble of {len(cfg.model.ensemble)} models: {' + '.join(cfg.model.ensemble)}"
    elif cfg.model.name == "modulation_linear":
        front_end = (f"modulation spectra of {f.modulation_bands} mel bands at "
                     f"{1000 * f.modulation_window:g}/{1000 * f.modulation_hop:g} ms")
    else:
        front_end = f.compression
    print(f"preset                  {cfg.name}")
    print(f"model                   {cfg.model.name} ({type(model).__name__})")
    print(f"input                   {cfg.audio.window_seconds:g} s windows at {cfg.audio.sample_rate} Hz "
          f"({window} samples, {cfg.features.kind}"
          f"{', ' + front_end if cfg.features.kind == 'logmel' else ''})")
    print(f"trainable parameters    {trainable:,}")
    print(f"non-trainable params    {frozen:,}")
    print(f"MACs per 5-s clip       {macs:,} ({macs / 1e9:.3f} G, {windows_per_clip} window(s))")
    if args.layers:
        print(model)
    return 0


def cmd_data(args) -> int:
    if args.data_command == "download":
        from .data.download import download

        path = download(args.dataset, Path(args.dest), url=args.url, sha256=args.sha256)
        print(f"{args.dataset} is ready at {path}")
        return 0
    if args.data_command == "info":
        from .config import load_config
        from .data.info import describe, format_info

        overrides = [f"data.format={args.format}"] if args.format else []
        if args.subset:
            overrides.append(f"data.subset={args.subset}")
        cfg = load_config("logmel-transformer", overrides)
        manifest = _manifest(cfg, resolve_data(args.data))
        info = describe(manifest)
        print(json.dumps(info, indent=2) if args.json else format_info(info))
        return 1 if info["bad_files"] else 0
    build_parser().parse_args(["data", "--help"])
    return 2


def cmd_train(args) -> int:
    from .cv import Job, make_split
    from .train import run_job

    cfg, _, manifest = _config_and_data(args)
    folds = manifest.folds
    test = args.test_fold if args.test_fold is not None else folds[-1]
    for flag, fold in (("--test-fold", test), ("--val-fold", args.val_fold)):
        if fold is not None and fold not in folds:
            raise SoundformerError(f"{flag} {fold} is not one of the data's folds {folds}")
    if args.val_fold is not None and args.val_fold == test:
        raise SoundformerError("--val-fold must differ from --test-fold: the test fold never guides training")
    val = [args.val_fold] if args.val_fold is not None else []
    job = Job(Path(args.out).name, [f for f in folds if f != test and f not in val], val, [test])
    summary = run_job(cfg, manifest, make_split(manifest, job, cfg), Path(args.out), resume=args.resume,
                      overwrite=args.overwrite, progress=not args.quiet)
    if not summary:  # a torchrun rank other than 0: rank 0 reports
        return 0
    val = f"val acc {summary['val_acc']:.3f}" if "val_acc" in summary else "no validation data"
    print(f"{cfg.name}: train acc {summary['train_acc']:.3f}, {val}, "
          f"test acc {summary.get('test_acc', float('nan')):.3f} (fold {test}); selected {summary['selected']}; "
          f"run folder {args.out}")
    return 0


def cmd_cv(args) -> int:
    from .cv import run_cv

    cfg, _, manifest = _config_and_data(args)
    _say_protocol_settings(args)
    summary = run_cv(cfg, manifest, Path(args.out), protocol=args.protocol, jobs=max(1, args.jobs),
                     test_fold=args.test_fold, progress=not args.quiet, launcher=args.launcher,
                     ray_address=args.address)
    per = ", ".join(f"{k} {v['test_acc']:.3f}" for k, v in summary["per_job"].items())
    print(f"{cfg.name} ({args.protocol}): test acc {summary['test_acc_mean']:.4f} +- {summary['test_acc_std']:.4f} [{per}]")
    if "ensemble_test_acc" in summary:
        print(f"ensemble of the fold models on the held-out fold: {summary['ensemble_test_acc']:.4f}")
    print(f"summary: {Path(args.out) / 'cv_summary.json'}")
    return 0


def cmd_report(args) -> int:
    from .report import build_report

    build_report([Path(p) for p in args.runs], Path(args.out), data=Path(args.data) if args.data else None,
                 title=args.title)
    print(f"open {Path(args.out) / 'report.html'}")
    return 0


def cmd_study(args) -> int:
    from .report import build_report
    from .study import run_study, study_configs

    data_path = resolve_data(args.data)
    extra = list(args.overrides)
    if args.format:
        extra.append(f"data.format={args.format}")
    if args.subset:
        extra.append(f"data.subset={args.subset}")
    cfgs = study_configs(args.budget, str(data_path.resolve()), extra)
    manifest = _manifest(cfgs[0], data_path)
    out = Path(args.out)
    folders = run_study(cfgs, manifest, out, jobs=max(1, args.jobs), progress=not args.quiet,
                        launcher=args.launcher, ray_address=args.address)
    build_report(folders, out / "report", data=data_path,
                 title=f"soundformer study ({args.budget} budget) on {data_path.name}")
    print(f"open {out / 'report' / 'report.html'}")
    return 0


def cmd_predict(args) -> int:
    import csv as _csv

    from .data.audio import AudioError
    from .predict import expand_paths, load_model

    clf = load_model(args.checkpoint, device=args.device)
    if args.eval_crops is not None:
        if args.eval_crops < 0:
            raise SoundformerError(f"--eval-crops is a number of crops (0 = whole windows only), got {args.eval_crops}")
        clf.cfg.train.eval_crops = args.eval_crops
    files = expand_paths(args.paths)
    if not files:
        raise SoundformerError("no audio files found in the given paths")
    results, failed = [], 0
    for path in files:
        try:
            pred = clf.predict_file(path)
            results.append({"path": str(path), **pred.to_dict(args.top_k, args.windows)})
        except (AudioError, SoundformerError) as exc:
            failed += 1
            print(f"soundformer: error: {exc}", file=sys.stderr)
            results.append({"path": str(path), "error": str(exc)})
    if args.format == "json":
        print(json.dumps(results, indent=2))
    elif args.format == "csv":
        writer = _csv.writer(sys.stdout)
        writer.writerow(["path", "label", *[f"p_{c}" for c in clf.classes], "error"])
        for r in results:
            probs = [f"{r['probabilities'][c]:.6f}" for c in clf.classes] if "error" not in r else [""] * len(clf.classes)
            writer.writerow([r["path"], r.get("label", ""), *probs, r.get("error", "")])
    else:
        for r in results:
            if "error" in r:
                continue
            top = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"])
            print(f"{r['path']}: {top}")
            for w in r.get("windows", []):
                print(f"    {w['start_s']:7.2f}-{w['end_s']:7.2f} s  {w['label']} {w['probability']:.3f}")
    return 1 if failed else 0


def cmd_embed(args) -> int:
    import numpy as np

    from .data.audio import AudioError
    from .predict import expand_paths, load_model

    clf = load_model(args.checkpoint)
    files = expand_paths(args.paths)
    paths, vectors, labels, failed = [], [], [], 0
    for path in files:
        try:
            vectors.append(clf.embed_file(path))
            labels.append(clf.predict_file(path).label)
            paths.append(str(path))
        except (AudioError, SoundformerError) as exc:
            failed += 1
            print(f"soundformer: error: {exc}", file=sys.stderr)
    if not vectors:
        raise SoundformerError("no embeddings written: no readable audio files in the given paths")
    np.savez(args.out, paths=np.array(paths), embeddings=np.stack(vectors), predicted=np.array(labels))
    print(f"{len(vectors)} embeddings of dimension {len(vectors[0])} written to {args.out}")
    return 1 if failed else 0


def cmd_export(args) -> int:
    from .export import export
    from .predict import load_model

    meta = export(load_model(args.checkpoint), args.format, Path(args.out))
    axes = "dynamic batch and time" if meta["dynamic_time"] else f"dynamic batch, {meta['window_samples']} samples"
    print(f"exported {args.format} to {args.out} (waveform at {meta['sample_rate']} Hz, {axes}); metadata in "
          f"{Path(args.out).with_suffix('.json')}")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import parse_grid, run_sweep

    _, data_path, manifest = _config_and_data(args)  # validates the base config and flags
    overrides = _overrides_from_args(args)
    _say_protocol_settings(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run_sweep(args.preset, overrides, parse_grid(args.grid), manifest, str(data_path.resolve()), out,
                     protocol=args.protocol, jobs=max(1, args.jobs), launcher=args.launcher,
                     ray_address=args.address, progress=not args.quiet)
    print("rank  val acc   test acc         point")
    for r in rows:
        print(f"{r['rank']:>4}  {r['val_acc_mean']:.4f}  {r['test_acc_mean']:.4f} +- {r['test_acc_std']:.4f}  {r['point']}")
    print(f"ranked by mean validation accuracy; table in {out / 'sweep_summary.csv'}")
    return 0


COMMANDS = {"sweep": cmd_sweep, "predict": cmd_predict, "embed": cmd_embed, "export": cmd_export, "report": cmd_report, "study": cmd_study, "presets": cmd_presets, "summary": cmd_summary, "data": cmd_data, "train": cmd_train, "cv": cmd_cv}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except SoundformerError as exc:
        print(f"soundformer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soundformer: interrupted", file=sys.stderr)
        return 130
