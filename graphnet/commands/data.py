"""``graphnet data list`` and ``graphnet data fetch NAME...``: the registered datasets, and
downloading the ones that come from the web into the cache."""
from __future__ import annotations

from pathlib import Path

from ..data.cache import CACHE_ENV, checked_cache_dir, dataset_folder
from ..data.fetch import MIRROR_ENV
from ..errors import UsageError
from ._common import registry_from_args

ORDER = 60


def register(subparsers, common) -> None:
    parser = subparsers.add_parser("data", parents=[common], help="list and download datasets",
                                   description="List the registered datasets, or download "
                                   "datasets into the cache.")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    cache_help = f"dataset cache folder (default: {CACHE_ENV}, else ~/.cache/graphnet)"

    listing = actions.add_parser("list", parents=[common], help="show datasets and cache status")
    listing.add_argument("--cache-dir", type=Path, default=None, help=cache_help)

    fetching = actions.add_parser("fetch", parents=[common], help="download datasets",
                                  description="Download datasets into the cache, checking each "
                                  "file's SHA-256; an interrupted download resumes.")
    fetching.add_argument("names", nargs="+", metavar="NAME",
                          help="dataset to download, e.g. mnist, fashion-mnist or cifar10")
    fetching.add_argument("--cache-dir", type=Path, default=None, help=cache_help)
    fetching.add_argument("--mirror", default=None, metavar="URL",
                          help=f"fetch MIRROR/NAME/FILE instead (default: {MIRROR_ENV})")
    parser.set_defaults(run=run)


def run(args) -> int:
    return ACTIONS[args.data_command](args)


def run_list(args) -> int:
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


ACTIONS = {"list": run_list, "fetch": run_fetch}


def _one_line_doc(source) -> str:
    text = (source.__doc__ or "").strip()
    return text.splitlines()[0].strip() if text else ""
