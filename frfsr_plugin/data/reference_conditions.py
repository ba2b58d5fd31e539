"""Reference conditions of the robustness evaluation (FRFSR paper, Tables III/IV and Fig. 10) as test-set options.

Each condition gives a CUFED5 folder (``XXX_0.png`` GTs, ``XXX_1..5.png`` references) other references through the
options of :class:`~frfsr_plugin.data.refsr_test_dataset.RefSRTestDataset`. ``tools/evaluate_robustness.py`` and
``frfsr demo`` evaluate models under them.
"""
from frfsr_plugin.data.refsr_test_dataset import CUFED5_REF_LEVELS
from frfsr_plugin.data.transforms import SUPPORTED_SCALE
from frfsr_plugin.utils.errors import OptionError

SHUFFLE_GRIDS = {'shuffle_easy': 2, 'shuffle_medium': 4, 'shuffle_hard': 8}
# condition -> description of its reference, in table order
REFERENCE_CONDITIONS = {
    **{
        f'level{level}': f'CUFED5 reference of similarity level {level}'
        for level in CUFED5_REF_LEVELS
    },
    'lr': 'the bicubic-upsampled LR image',
    'shuffle_easy': 'level-1 reference shuffled in 2x2 tiles',
    'shuffle_medium': 'level-1 reference shuffled in 4x4 tiles',
    'shuffle_hard': 'level-1 reference shuffled in 8x8 tiles',
    'irrelevant': 'level-1 reference of sample (i + {offset}) mod N',
    'bicubic': 'none (bicubic up-sampling of the LR)',
}
REFERENCE_CONDITIONS['level1'] += ' (highest)'
REFERENCE_CONDITIONS[f'level{CUFED5_REF_LEVELS[-1]}'] += ' (lowest)'


def reference_condition_options(condition,
                                dataroot,
                                scale=SUPPORTED_SCALE,
                                irrelevant_offset=1,
                                shuffle_seed=0,
                                name=None):
    """``RefSRTestDataset`` options that give a condition's references.

    Args:
        condition (str): A key of :data:`REFERENCE_CONDITIONS`. ``bicubic`` uses the ``lr`` set (its ``lq_up`` is
            the bicubic-upsampled LR of the unpadded GT).
        dataroot (str): CUFED5 folder (``XXX_0.png`` GTs, ``XXX_1..5.png`` references).
        scale (int): SR factor. Default: 4.
        irrelevant_offset (int): ``ref_from_other_sample`` of the ``irrelevant`` condition. Default: 1.
        shuffle_seed (int): ``ref_shuffle_seed`` of the shuffle conditions. Default: 0.
        name (str | None): Dataset name (BasicSR names result folders after it). Default: ``CUFED5_<condition>``.

    Returns:
        dict: Dataset options for BasicSR's ``build_dataset``.
    """
    if condition not in REFERENCE_CONDITIONS:
        raise OptionError(f"unknown condition {condition!r}; choose from: {', '.join(REFERENCE_CONDITIONS)}")
    opt = {
        'name': name or f'CUFED5_{condition}',
        'type': 'RefSRTestDataset',
        'mode': 'cufed5',
        'dataroot_gt': dataroot,
        'phase': 'test',
        'scale': scale,
        'ref_level': 1
    }
    if condition.startswith('level'):
        opt['ref_level'] = int(condition[len('level'):])
    elif condition in ('lr', 'bicubic'):
        opt['ref_level'] = 'lr'
    elif condition in SHUFFLE_GRIDS:
        opt.update(ref_shuffle_grid=SHUFFLE_GRIDS[condition], ref_shuffle_seed=shuffle_seed)
    else:
        opt['ref_from_other_sample'] = irrelevant_offset
    return opt
