"""``frfsr rank``: rank candidate references for an LR image; also the ``--top-k`` selection of ``frfsr infer``."""
import os
import sys
import time
from os import path as osp

from frfsr_plugin.data.transforms import IMG_EXTENSIONS, read_image_rgb
from frfsr_plugin.restoration.retrieval import DEFAULT_RERANK, ReferenceRetriever
from frfsr_plugin.utils.errors import BadFileError, MissingFileError, OptionError


def list_reference_candidates(path, command='infer'):
    """The references of ``--ref-dir``: the file itself, or the image files directly inside the folder, sorted.

    Other files are skipped with a warning on stderr (hidden ones and subfolders silently).

    Args:
        path (str): An image file or a folder.
        command (str): ``'infer'`` or ``'rank'``, for the warnings. Default: ``'infer'``.

    Returns:
        list[str]: Image paths, at least one.
    """
    if osp.isfile(path):
        if not path.lower().endswith(IMG_EXTENSIONS):
            raise BadFileError(f"--ref-dir: '{path}' is not an image file ({', '.join(IMG_EXTENSIONS)}).")
        return [path]
    if not osp.isdir(path):
        raise MissingFileError(f"--ref-dir: '{path}' does not exist.")
    try:
        names = sorted(os.listdir(path))
    except OSError as error:
        raise BadFileError(f"--ref-dir: cannot read the folder '{path}' ({error.strerror}).") from error
    images = []
    for name in names:
        candidate = osp.join(path, name)
        if name.startswith('.') or not osp.isfile(candidate):
            continue
        if name.lower().endswith(IMG_EXTENSIONS):
            images.append(candidate)
        else:
            print(f"frfsr {command}: warning: --ref-dir: skipping '{candidate}' (not an image file)", file=sys.stderr)
    if not images:
        raise MissingFileError(f"--ref-dir: no images ({', '.join(IMG_EXTENSIONS)}) in '{path}'.")
    return images


def check_retrieval_options(top_k, rerank, ref_dir):
    """Stop with one line for a ``--top-k`` without ``--ref-dir``, or a ``--top-k`` / ``--rerank`` below 1."""
    if top_k is not None and not ref_dir:
        raise OptionError('--top-k picks references among the candidates of --ref-dir; give --ref-dir.')
    for name, value in (('--top-k', top_k), ('--rerank', rerank)):
        if value is not None and value < 1:
            raise OptionError(f'{name} must be at least 1, got {value}.')


def format_ranking(ranking, lr_name, limit=None):
    """The ranking as printable lines: a header, then one line per candidate (the first ``limit``; None: all).

    Args:
        ranking (Ranking): From :meth:`ReferenceRetriever.rank`.
        lr_name (str): The LR's name for the header.
        limit (int | None): How many candidates to list. Default: None (all).

    Returns:
        list[str]
    """
    shown = ranking.candidates if limit is None else ranking.candidates[:limit]
    lines = [
        f'references for {lr_name}, best first ({len(ranking.candidates)} candidates; match: dense match score, '
        'descriptor: global texture descriptor):'
    ]
    for place, candidate in enumerate(shown, 1):
        match = '     -' if candidate.match_score is None else f'{candidate.match_score:.4f}'
        lines.append(f'{place:4d}  match {match}  descriptor {candidate.descriptor_score:.4f}  {candidate.path}')
    return lines


def rank_candidates(retriever, lr, lr_name, candidates, rerank, command, limit=None):
    """Rank ``candidates`` for one LR, print the ranking (and a warning per skipped file, on stderr).

    Args:
        retriever (ReferenceRetriever): The ranker.
        lr (ndarray): (h, w, 3) RGB uint8.
        lr_name (str): The LR's name.
        candidates (list[str]): Candidate files.
        rerank (int): Shortlist re-ranked by dense match score.
        command (str): ``'rank'`` or ``'infer'``, for the warnings.
        limit (int | None): Candidates printed (None: all). Default: None.

    Returns:
        Ranking
    """
    start = time.perf_counter()
    ranking = retriever.rank(lr, candidates, rerank)
    for path, reason in ranking.skipped:
        print(f"frfsr {command}: warning: skipping candidate '{path}' ({reason})", file=sys.stderr)
    if not ranking.candidates:
        raise MissingFileError(f'none of the {len(candidates)} candidates is a usable reference.')
    print('\n'.join(format_ranking(ranking, lr_name, limit)))
    print(f'ranked {len(ranking.candidates)} candidates in {time.perf_counter() - start:.1f} s')
    return ranking


def run_rank(args):
    """Run ``frfsr rank`` with parsed arguments; returns the :class:`Ranking`."""
    check_retrieval_options(None, args.rerank, args.ref_dir)
    lr = read_image_rgb(args.lr)
    candidates = list_reference_candidates(args.ref_dir, 'rank')
    retriever = ReferenceRetriever.from_options(args.opt, args.device)
    rerank = DEFAULT_RERANK if args.rerank is None else args.rerank
    return rank_candidates(retriever, lr, osp.basename(args.lr), candidates, rerank, 'rank')
