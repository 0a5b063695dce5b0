"""Only here to ship ``nnunet_scnas.pth`` into site-packages (pyproject.toml has the rest).

The .pth line runs at interpreter start and puts the trainer shims on ``nnUNet_extTrainer``,
so ``nnUNetv2_train -tr nnUNetTrainerSCNASSearch`` (and DDP workers, and nnUNetv2_predict)
find the trainers with nothing exported by hand. See nnunet_scnas/_discovery.py.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "nnunet_scnas.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        target = os.path.join(self.build_lib, PTH)
        self.copy_file(PTH, target, preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


class EditableWheelWithPth(editable_wheel):
    """``pip install -e .``: add the same .pth to the editable wheel (setuptools' strategy API)."""

    def _select_strategy(self, name, tag, build_lib):
        strategy = super()._select_strategy(name, tag, build_lib)

        class WithPth:
            def __enter__(self):
                strategy.__enter__()
                return self

            def __exit__(self, *exc):
                return strategy.__exit__(*exc)

            def __call__(self, wheel, files, mapping):
                strategy(wheel, files, mapping)
                with open(PTH, "rb") as f:
                    wheel.writestr(PTH, f.read())

        return WithPth()


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
