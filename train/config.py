"""TrainConfig: the recipe, read from the `train:` section of a config file (SSD's caffe/ssd_pascal.py and ScratchDet's
mmdetection config, github.com/KimSoybean/ScratchDet)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from scratchdet.models.config import ModelConfig, from_dict, load_model_config, read_yaml, resolve_config_path

SCHEDULES = ("step", "cosine")
AMP_MODES = ("off", "fp16", "bf16")
BOX_LOSSES = ("smooth_l1", "giou", "diou", "ciou")
CLASS_LOSSES = ("hard_negative", "focal")
ASSIGNERS = ("max_iou", "atss")


def amp_name(amp: str | bool) -> str:
    """train.amp as a mode name: YAML's booleans (a bare `off` is false; true is the old on/off switch) mapped."""
    if isinstance(amp, bool):
        return "fp16" if amp else "off"
    return amp


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 24
    batch_size: int = 32
    # ScratchDet trains with LR 0.05 at batch 128 (Sec. 4.1); the LR scales linearly with the batch.
    base_lr: float = 0.05
    base_batch: int = 128
    lr: float | None = None  # an absolute LR, replacing the scaled one
    momentum: float = 0.9
    weight_decay: float = 5e-4  # not applied to BN parameters and biases
    warmup_iters: int = 500
    warmup_ratio: float = 1 / 3  # mmdet's linear warmup starts at 1/3 of the LR
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.4, 0.75, 0.9)  # fractions of all iterations (VOC: 40k/75k/90k of 100k)
    gamma: float = 0.1
    seed: int = 0
    workers: int | None = None  # data-loading processes per rank; None: min(8, CPUs per rank) on CUDA, 1 on CPU
    eval_every: int = 1  # epochs
    # Mixed precision: fp16 autocast with a GradScaler (CUDA only; off on CPU), or bf16 autocast without a
    # scaler (bf16 has fp32's exponent range; CUDA on Ampere or newer, or CPU). YAML reads a bare `off` as
    # false and `true` as the old on/off switch: both are accepted (false -> "off", true -> "fp16").
    amp: str | bool = "fp16"
    cudnn_benchmark: bool = True  # cuDNN picks the fastest conv algorithms per shape (CUDA); not bit-reproducible
    ddp_timeout_s: float = 10800.0  # collectives wait this long: rank 0 validates alone (ultralytics: 3 h)
    deterministic: bool = False  # deterministic cuDNN/torch algorithms (slower); for exact GPU resume checks
    plots: bool = True  # the PNGs after every epoch (needs matplotlib; results.csv is written either way)
    channels_last: bool = False
    expand_max: float = 4.0  # SSD's zoom-out up to 4x; lower it for datasets of large objects only
    grad_window: int = 50  # steps over which gradient-norm fluctuation is measured
    max_nonfinite: int = 20  # consecutive non-finite losses before training stops
    # Take-off aids, all off by default; docs/results/seeds.md says which ones the measurements support.
    background_prior: float | None = None  # initial P(background) at every prior, e.g. 0.99 (RetinaNet)
    ema_decay: float | None = None  # evaluate and save an EMA of the weights, e.g. 0.9999 (ultralytics)
    ema_tau: float = 2000.0  # iterations over which the EMA decay ramps up
    warmup_clip: float | None = None  # clip the gradient norm to this during warm-up
    # The loss (train/loss.py); the defaults are SSD's (Sec. 2.2), `--recipe paper` sets them back by name.
    box_loss: str = "smooth_l1"  # or giou / diou / ciou on the decoded boxes
    box_loss_weight: float = 1.0  # mmdet's ATSS and GIoU configs weight the IoU losses 2.0
    class_loss: str = "hard_negative"  # softmax CE on positives and 3:1 mined negatives, or focal on all priors
    negative_ratio: float = 3.0
    focal_gamma: float = 2.0  # RetinaNet's gamma and alpha (Lin et al., Table 1a)
    focal_alpha: float = 0.25
    assigner: str = "max_iou"  # SSD's IoU >= 0.5 plus each box's best prior, or atss
    atss_topk: int = 9  # candidates per level and box (ATSS paper, Sec. 3.2)
    # Data-driven priors and augmentation (YOLO's levers), off by default: docs/results/training-recipe.md.
    fit_priors: bool = False  # fit the priors' sizes and ratios to the training boxes before training (fit_priors.py)
    mosaic: float = 0.0  # probability that a training image is a mosaic of four (mosaic.py)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule '{self.schedule}': choose one of {', '.join(SCHEDULES)}")
        for key, value, choices in (("box_loss", self.box_loss, BOX_LOSSES),
                                    ("class_loss", self.class_loss, CLASS_LOSSES),
                                    ("assigner", self.assigner, ASSIGNERS)):
            if value not in choices:
                raise ValueError(f"train.{key} '{value}': choose one of {', '.join(choices)}")
        if not 0.0 <= self.mosaic <= 1.0:
            raise ValueError(f"train.mosaic {self.mosaic}: a probability, between 0 and 1")
        if self.atss_topk < 1:
            raise ValueError(f"train.atss_topk {self.atss_topk}: must be >= 1")
        object.__setattr__(self, "amp", amp_name(self.amp))  # frozen: the YAML booleans become names here
        if self.amp not in AMP_MODES:
            raise ValueError(f"train.amp '{self.amp}': choose one of {', '.join(AMP_MODES)}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"train.workers {self.workers}: must be >= 0 (or omitted for the automatic choice)")
        if self.ddp_timeout_s <= 0:
            raise ValueError(f"train.ddp_timeout_s {self.ddp_timeout_s}: must be > 0 seconds")

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.batch_size / self.base_batch


# Named recipes: the training settings that reproduce a paper, applied over a config's `train:` section.
RECIPES: dict[str, dict[str, object]] = {
    # ScratchDet (Sec. 4.1) on SSD's loss and augmentation: SSD matching, Smooth-L1, 3:1 hard negatives, step
    # decay, full zoom-out; none of the take-off aids.
    "paper": {"box_loss": "smooth_l1", "box_loss_weight": 1.0, "class_loss": "hard_negative", "negative_ratio": 3.0,
              "assigner": "max_iou", "schedule": "step", "expand_max": 4.0, "background_prior": None,
              "ema_decay": None, "warmup_clip": None, "fit_priors": False, "mosaic": 0.0},
}


def apply_recipe(config: TrainConfig, name: str) -> TrainConfig:
    """`config` with the named recipe's settings (RECIPES); other fields (epochs, batch, LR) kept.

    Raises:
        ValueError: an unknown recipe name, listing the known ones.
    """
    if name not in RECIPES:
        raise ValueError(f"recipe '{name}': unknown; known recipes: {', '.join(sorted(RECIPES))}")
    return replace(config, **RECIPES[name])  # type: ignore[arg-type]


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """Model and training sections of a config file; the `train:` section is optional."""
    path = resolve_config_path(path)
    data = read_yaml(path)
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {', '.join(unknown)} (known: model, train)")
    train = from_dict(TrainConfig, data.get("train", {}), str(path), prefix="train.")
    return load_model_config(path), train
