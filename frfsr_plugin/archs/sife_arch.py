"""Single-image feature embedding (SIFE): the trunk of a pretrained ESRGAN RRDBNet at LR resolution."""
from basicsr.archs.rrdbnet_arch import RRDBNet
from basicsr.utils.registry import ARCH_REGISTRY

from frfsr_plugin.utils.checkpoint import load_pretrained

RRDB_WEIGHTS_DESCRIPTION = ("BasicSR's ESRGAN RRDBNet x4 weights under key 'params' "
                            '(ESRGAN_PSNR_SRx4_DF2K_official-150ff491.pth)')


@ARCH_REGISTRY.register()
class FRFSRSIFENet(RRDBNet):
    """ESRGAN RRDBNet whose forward returns the LR-resolution trunk feature instead of the SR image.

    The up-sampling layers stay in the module (so official checkpoints load strictly and the parameter count is the
    full RRDBNet's) but are not run. FRFSR keeps this network frozen.

    Args:
        pretrained (str | bool): Local RRDBNet weights, or False for random init (tests only).
        num_feat (int): Trunk channels. Default: 64.
        num_block (int): RRDB blocks. Default: 23.
        num_grow_ch (int): Growth channels of the dense blocks. Default: 32.
    """

    def __init__(self, pretrained=None, num_feat=64, num_block=23, num_grow_ch=32):
        super().__init__(
            num_in_ch=3, num_out_ch=3, scale=4, num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)
        self.out_channels = num_feat  # of the trunk feature that forward returns
        load_pretrained(self, pretrained, type(self).__name__, RRDB_WEIGHTS_DESCRIPTION)

    def forward(self, img_lq):
        """
        Args:
            img_lq (Tensor): LR image in [0, 1], shape (B, 3, h, w).

        Returns:
            Tensor: Trunk feature ``conv_first + conv_body(body(conv_first))``, shape (B, num_feat, h, w).
        """
        feat = self.conv_first(img_lq)
        return feat + self.conv_body(self.body(feat))
