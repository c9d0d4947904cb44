"""The host's default configuration (``mdistiller.engine.cfg.CFG``), for use without mdistiller.

Every key and default equals the host's; tests compare this tree with the facts file produced
from the real package. Methods this project adds register their own nodes in ``config.py``.
"""
from yacs.config import CfgNode as CN


def _loss(ce: float, feat: float) -> CN:
    n = CN()
    n.CE_WEIGHT = ce
    n.FEAT_WEIGHT = feat
    return n


def host_defaults() -> CN:
    c = CN()
    c.EXPERIMENT = CN()
    c.EXPERIMENT.PROJECT = "distill"
    c.EXPERIMENT.NAME = ""
    c.EXPERIMENT.TAG = "default"

    c.DATASET = CN()
    c.DATASET.TYPE = "cifar100"
    c.DATASET.NUM_WORKERS = 2
    c.DATASET.TEST = CN()
    c.DATASET.TEST.BATCH_SIZE = 64

    c.DISTILLER = CN()
    c.DISTILLER.TYPE = "NONE"
    c.DISTILLER.TEACHER = "ResNet50"
    c.DISTILLER.STUDENT = "resnet32"

    c.SOLVER = CN()
    c.SOLVER.TRAINER = "base"
    c.SOLVER.BATCH_SIZE = 64
    c.SOLVER.EPOCHS = 240
    c.SOLVER.LR = 0.05
    c.SOLVER.LR_DECAY_STAGES = [150, 180, 210]
    c.SOLVER.LR_DECAY_RATE = 0.1
    c.SOLVER.WEIGHT_DECAY = 0.0001
    c.SOLVER.MOMENTUM = 0.9
    c.SOLVER.TYPE = "SGD"
    c.SOLVER.DOT = CN()
    c.SOLVER.DOT.DELTA = 0.075

    c.LOG = CN()
    c.LOG.TENSORBOARD_FREQ = 500
    c.LOG.SAVE_CHECKPOINT_FREQ = 40
    c.LOG.PREFIX = "./output"
    c.LOG.WANDB = True

    c.KD = CN()
    c.KD.TEMPERATURE = 4
    c.KD.LOSS = CN()
    c.KD.LOSS.CE_WEIGHT = 0.1
    c.KD.LOSS.KD_WEIGHT = 0.9

    c.AT = CN()
    c.AT.P = 2
    c.AT.LOSS = _loss(1.0, 1000.0)

    c.RKD = CN()
    c.RKD.DISTANCE_WEIGHT = 25
    c.RKD.ANGLE_WEIGHT = 50
    c.RKD.LOSS = _loss(1.0, 1.0)
    c.RKD.PDIST = CN()
    c.RKD.PDIST.EPSILON = 1e-12
    c.RKD.PDIST.SQUARED = False

    c.FITNET = CN()
    c.FITNET.HINT_LAYER = 2
    c.FITNET.INPUT_SIZE = (32, 32)
    c.FITNET.LOSS = _loss(1.0, 100.0)

    c.KDSVD = CN()
    c.KDSVD.K = 1
    c.KDSVD.LOSS = _loss(1.0, 1.0)

    c.OFD = CN()
    c.OFD.LOSS = _loss(1.0, 0.001)
    c.OFD.CONNECTOR = CN()
    c.OFD.CONNECTOR.KERNEL_SIZE = 1

    c.NST = CN()
    c.NST.LOSS = _loss(1.0, 50.0)

    c.PKT = CN()
    c.PKT.LOSS = _loss(1.0, 30000.0)

    c.SP = CN()
    c.SP.LOSS = _loss(1.0, 3000.0)

    c.VID = CN()
    c.VID.LOSS = _loss(1.0, 1.0)
    c.VID.EPS = 1e-5
    c.VID.INIT_PRED_VAR = 5.0
    c.VID.INPUT_SIZE = (32, 32)

    c.CRD = CN()
    c.CRD.MODE = "exact"
    c.CRD.FEAT = CN()
    c.CRD.FEAT.DIM = 128
    c.CRD.FEAT.STUDENT_DIM = 256
    c.CRD.FEAT.TEACHER_DIM = 256
    c.CRD.LOSS = _loss(1.0, 0.8)
    c.CRD.NCE = CN()
    c.CRD.NCE.K = 16384
    c.CRD.NCE.MOMENTUM = 0.5
    c.CRD.NCE.TEMPERATURE = 0.07

    c.REVIEWKD = CN()
    c.REVIEWKD.CE_WEIGHT = 1.0
    c.REVIEWKD.REVIEWKD_WEIGHT = 1.0
    c.REVIEWKD.WARMUP_EPOCHS = 20
    c.REVIEWKD.SHAPES = [1, 8, 16, 32]
    c.REVIEWKD.OUT_SHAPES = [1, 8, 16, 32]
    c.REVIEWKD.IN_CHANNELS = [64, 128, 256, 256]
    c.REVIEWKD.OUT_CHANNELS = [64, 128, 256, 256]
    c.REVIEWKD.MAX_MID_CHANNEL = 512
    c.REVIEWKD.STU_PREACT = False

    c.DKD = CN()
    c.DKD.CE_WEIGHT = 1.0
    c.DKD.ALPHA = 1.0
    c.DKD.BETA = 8.0
    c.DKD.T = 4.0
    c.DKD.WARMUP = 20
    return c


CFG = host_defaults()
