"""A-LIX (Cetin et al. 2022, "Stabilizing Off-Policy Deep Reinforcement Learning from Pixels",
arXiv:2207.00986): DrQ-v2 without image augmentation, with adaptive local signal mixing after every
conv + ReLU of the encoder.

    encoder:  conv, ReLU, mix_S, conv, ReLU, mix_S, conv, ReLU, mix_S, conv, ReLU, mix_S
              mix_S: replicate pad, bilinear resample at one random shift in [-2.5 S, 2.5 S] px per axis;
              active while training (target computation on s' included), off while acting
    each update, after the critic's backward (DrQ-v2's update otherwise):
              nd = ND score of dLoss/d(last mixing layer's output)
              S <- clamp(Adam step on S with gradient (target_nd - nd), 0, 1)    (S rises while nd > target)
One S is shared by the four layers and tuned from the last one, which alone records its gradient.
"""

from __future__ import annotations

from model_free.drqv2 import DrQv2
from worldmodels.regularizers import AdaptiveStrength, LocalSignalMixing, alix_dual_step


class ALIX(DrQv2):
    """Args (the rest: DrQv2's):
        augment: DrQ-v2's random shift of the images (off: A-LIX replaces it).
        alix_init: initial mixing strength S in [0, 1].
        alix_target_nd: ND score the dual update steers the last layer's feature gradient to.
        alix_lr, alix_betas: S's own Adam.
        alix_max_shift: largest shift in pixels at S = 1 (reference LocalSignalMixing(pad=2): 2.5).
    """

    def __init__(self, augment: bool = False, alix_init: float = 0.5, alix_target_nd: float = 0.535,
                 alix_lr: float = 2e-3, alix_betas: tuple[float, float] = (0.5, 0.999),
                 alix_max_shift: float = 2.5, **kwargs):
        super().__init__(augment=augment, **kwargs)

    def build(self, spec) -> None:
        spec.require("A-LIX", actions=("continuous",), kinds=("image",))  # its layers mix conv feature maps
        super().build(spec)

    def mixing_factory(self):
        """One layer after every conv + ReLU of the encoder, sharing one S; only the last layer records
        the gradient S is tuned from."""
        h = self.hparams
        self.alix_strength = AdaptiveStrength(h.alix_init, h.alix_target_nd, h.alix_lr, tuple(h.alix_betas))
        return lambda last: LocalSignalMixing(self.alix_strength, h.alix_max_shift, record_gradient=last)

    def configure_optimizers(self):
        # S's Adam goes with the others so that Lightning checkpoints and restores its moments;
        # only AdaptiveStrength.update steps it.
        return super().configure_optimizers() + [self.alix_strength.make_optimizer()]

    def update_critic(self, *args) -> dict:
        return {**super().update_critic(*args), **alix_dual_step(self.alix_strength, self.encoder)}
