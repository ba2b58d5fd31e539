"""The ``basicsr`` command: BasicSR's train and test pipelines with installed plugins, in the current directory.

Usage::

    basicsr train -opt X.yml [--launcher none|pytorch|slurm] [--auto_resume] [--debug] [--force_yml k:sub=v ...]
    basicsr test -opt X.yml [--launcher ...]

Plugins are imported before the pipeline starts: every module of the entry-point group ``basicsr.plugins`` and every
module listed under the top-level YAML key ``plugins:`` (importable from the working directory).
"""
import os
import sys

import frfsr_plugin  # noqa: F401  (compat alias and registration before basicsr is used)
from frfsr_plugin.cli.option_checks import check_forced_options, check_registered_types, check_required_options
from frfsr_plugin.utils.cpu_allocator import retain_freed_cpu_memory
from frfsr_plugin.utils.errors import TrainingDivergedError, UserInputError
from frfsr_plugin.utils.options import load_plugins

COMMANDS = ('train', 'test')
USAGE = 'usage: basicsr {train,test} -opt OPTIONS.yml [--launcher none|pytorch|slurm] [--auto_resume] [--debug] ' \
        '[--force_yml KEY=VALUE ...]'


def option_file_from_args(args):
    """Value of ``-opt`` in BasicSR's argument list."""
    for index, arg in enumerate(args):
        if arg == '-opt' and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith('-opt='):
            return arg[len('-opt='):]
    raise UserInputError('the option file is missing: pass -opt OPTIONS.yml')


def normalise_args(args):
    """Accept torch.distributed.launch's ``--local-rank`` spelling as BasicSR's ``--local_rank``."""
    return ['--local_rank' + arg[len('--local-rank'):] if arg.startswith('--local-rank') else arg for arg in args]


def forced_options(args):
    """Values given after ``--force_yml`` in BasicSR's argument list."""
    if '--force_yml' not in args:
        return []
    forced = []
    for arg in args[args.index('--force_yml') + 1:]:
        if arg.startswith('-'):
            break
        forced.append(arg)
    return forced


def build_model_with_determinism(opt):
    """BasicSR's ``build_model`` after applying the ``deterministic`` option.

    Both pipelines switch cuDNN's autotuner on after parsing the options; building the model is the first step after
    that, so the option is applied here.
    """
    from basicsr.models import build_model

    from frfsr_plugin.utils.determinism import configure_determinism
    configure_determinism(opt)
    return build_model(opt)


def run(command, args):
    """Run BasicSR's ``command`` pipeline with ``args`` (BasicSR's own flags) in the current directory."""
    args = normalise_args(args)
    opt_path = option_file_from_args(args)
    opt = load_plugins(opt_path)
    check_required_options(opt, command, opt_path)
    check_forced_options(opt, forced_options(args), opt_path)
    check_registered_types(opt, opt_path)
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options

    from frfsr_plugin.utils.distributed import init_dist
    from frfsr_plugin.utils.resume import load_resume_state
    basicsr.train.load_resume_state = load_resume_state
    basicsr.utils.options.init_dist = init_dist
    basicsr.train.build_model = basicsr.test.build_model = build_model_with_determinism
    if command == 'test':
        retain_freed_cpu_memory()  # 40% faster CPU inference (utils/cpu_allocator.py)
    sys.argv = [f'basicsr {command}'] + args
    pipeline = basicsr.train.train_pipeline if command == 'train' else basicsr.test.test_pipeline
    pipeline(os.getcwd())


def error_message(error):
    """The message of a user error; for one re-raised by a DataLoader worker, without the worker's traceback."""
    message = str(error)
    if 'Original Traceback' in message:
        message = message.rstrip().splitlines()[-1].split(': ', 1)[-1]
    return message


def main(argv=None):
    """Console entry point. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f'basicsr: unknown command {argv[0]!r}\n{USAGE}', file=sys.stderr)
        return 2
    try:
        run(argv[0], argv[1:])
    except (UserInputError, TrainingDivergedError) as error:
        print(f'basicsr {argv[0]}: error: {error_message(error)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
