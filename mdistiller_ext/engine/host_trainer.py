"""The gradient-alignment trainer for mdistiller's own engine (registered as trainer "align").

Built on the host's BaseTrainer (passed in by ``registration.register``), so logging, checkpoints and
resume stay the host's; only one training iteration changes, and it runs this project's step
function (``step.train_step`` with alignment, no non-finite guard: the host has none), the same one
the standalone engine runs.
"""
import time

from mdistiller_ext.engine.step import StepSetup, train_step


def make_align_trainer(base_trainer: type) -> type:
    from mdistiller.engine.utils import accuracy

    class AlignTrainer(base_trainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            # the parameters and the distiller's loss split, once (the distiller is in DataParallel)
            self.setup = StepSetup.for_distiller(self.distiller.module, align=True)

        def train_iter(self, data, epoch, train_meters):
            start = time.time()
            image, target = data[0], data[1]
            train_meters["data_time"].update(time.time() - start)
            image = image.float().cuda(non_blocking=True)
            target = target.cuda(non_blocking=True)
            preds, loss = train_step(self.distiller, self.optimizer, image, target, epoch, self.setup)
            train_meters["training_time"].update(time.time() - start)
            n = image.size(0)
            acc1, acc5 = accuracy(preds, target, topk=(1, 5))
            train_meters["losses"].update(loss.cpu().numpy().mean(), n)
            train_meters["top1"].update(acc1[0], n)
            train_meters["top5"].update(acc5[0], n)
            return "Epoch:{}| Time(data):{:.3f}| Time(train):{:.3f}| Loss:{:.4f}| Top-1:{:.3f}| Top-5:{:.3f}".format(
                epoch, train_meters["data_time"].avg, train_meters["training_time"].avg,
                train_meters["losses"].avg, train_meters["top1"].avg, train_meters["top5"].avg)

    AlignTrainer.__name__ = "AlignTrainer"
    return AlignTrainer
