"""``graphnet data list``, ``graphnet data fetch NAME...`` and ``graphnet data sample NAME``:
the registered datasets, downloading the ones that come from the web into the cache, and
writing a few of any dataset's images to an .npz for ``graphnet predict``."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ._common import output_path, registry_from_args

SPLITS = ("train", "test")

ORDER = 60
HELP = "list and download datasets"


def register(subparsers, common) -> None:
    from ..data.cache import CACHE_ENV
    from ..data.fetch import MIRROR_ENV

    parser = subparsers.add_parser("data", parents=[common], help=HELP,
                                   description="List the registered datasets, or download "
                                   "datasets into the cache.")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    cache_help = f"dataset cache folder (default: {CACHE_ENV}, else ~/.cache/graphnet)"

    listing = actions.add_parser("list", parents=[common], help="show datasets and cache status")
    listing.add_argument("--cache-dir", default=None, help=cache_help)

    fetching = actions.add_parser("fetch", parents=[common], help="download datasets",
                                  description="Download datasets into the cache, checking each "
                                  "file's SHA-256; an interrupted download resumes.")
    fetching.add_argument("names", nargs="+", metavar="NAME",
                          help="dataset to download, e.g. mnist, fashion-mnist or cifar10")
    fetching.add_argument("--cache-dir", default=None, help=cache_help)
    fetching.add_argument("--mirror", default=None, metavar="URL",
                          help=f"fetch MIRROR/NAME/FILE instead (default: {MIRROR_ENV})")

    sampling = actions.add_parser(
        "sample", parents=[common], help="write sample images to an .npz",
        description="Write COUNT images of a dataset's split, with their labels and the class "
        "names, to an .npz that `graphnet predict` and `graphnet show --input` read (arrays "
        "images, labels, class_names).")
    sampling.add_argument("name", metavar="NAME", help="dataset, e.g. shapes or mnist")
    sampling.add_argument("--count", default="8", metavar="N", help="images to write (default 8)")
    sampling.add_argument("-o", "--output", required=True, metavar="PATH",
                          help="the .npz to write (atomically)")
    sampling.add_argument("--split", choices=SPLITS, default="test",
                          help="which split to draw from (default: test, never trained on)")
    sampling.add_argument("--seed", default="0", metavar="N",
                          help="seed of the dataset and of the choice of images (default 0)")
    sampling.add_argument("--dataset-option", dest="dataset_options", action="append",
                          default=[], metavar="KEY=VALUE",
                          help="an option of the dataset (repeatable), e.g. size=28")
    sampling.add_argument("--cache-dir", default=None, help=cache_help)
    parser.set_defaults(run=run)


def run(args) -> int:
    return ACTIONS[args.data_command](args)


def run_list(args) -> int:
    from ..data.cache import checked_cache_dir
    from ..render.data import render_dataset_table

    registry = registry_from_args(args)
    cache_dir = checked_cache_dir(args.cache_dir)
    rows = []
    for name in registry.names("dataset"):
        source = registry.entry("dataset", name).value
        rows.append((name, _one_line_doc(source), source.cache_status(cache_dir)))
    render_dataset_table(rows, cache_dir)
    return 0


def run_fetch(args) -> int:
    from ..data.cache import checked_cache_dir, dataset_folder
    from ..data.fetch import fetch
    from ..render.data import download_progress, render_fetch_results

    registry = registry_from_args(args)
    sources = [registry.entry("dataset", name, field_name="NAME").value for name in args.names]
    for source in sources:
        if source.remote is None:
            raise UsageError(f"dataset {source.name!r} has nothing to download", field="NAME",
                             expected="a dataset with files to download, such as mnist",
                             hint=source.cache_status(None) or None)
    cache_dir = checked_cache_dir(args.cache_dir)
    for source in sources:
        folder = dataset_folder(cache_dir, source.name)
        with download_progress() as progress:
            results = fetch(source.remote, folder, dataset=source.name, mirror=args.mirror,
                            progress=progress)
        render_fetch_results(source.name, folder, results)
    return 0


def run_sample(args) -> int:
    from ..data.cache import checked_cache_dir
    from ..data.sample import sample_dataset, write_sample
    from ._training import dataset_options
    from ..render.data import render_sample

    args.output = Path(args.output)  # not argparse's type: "" would become "." unseen
    count, seed = _whole_number(args.count, "--count", 1), _whole_number(args.seed, "--seed", 0)
    options = dataset_options(args.dataset_options)
    if args.output.suffix.lower() != ".npz":
        raise UsageError("bad argument", field="--output", expected="a file name ending .npz",
                         found=repr(str(args.output)))
    # a dataset read from a file (npz's path=) must not be sampled over itself
    output_path(args, args.output, field="--output",
                reads=[(f"dataset's file (--dataset-option {key})", value)
                       for key, value in options.items() if isinstance(value, str)])
    dataset, indices = sample_dataset(registry_from_args(args), args.name, count=count,
                                      split=args.split, seed=seed, options=options,
                                      cache_dir=checked_cache_dir(args.cache_dir))
    write_sample(args.output, dataset, args.split, indices)
    labels = getattr(dataset, args.split).labels[indices]
    render_sample(args.output, args.name, args.split, dataset.image_shape,
                  [dataset.class_names[label] if label < len(dataset.class_names) else str(label)
                   for label in labels.tolist()])
    return 0


def _whole_number(text: str, flag: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise UsageError("bad argument", field=flag, expected=f"an integer >= {minimum}",
                         found=repr(text))
    return value


ACTIONS = {"list": run_list, "fetch": run_fetch, "sample": run_sample}


def _one_line_doc(source) -> str:
    text = (source.__doc__ or "").strip()
    return text.splitlines()[0].strip() if text else ""
