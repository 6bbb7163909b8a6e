"""Each process of a several-GPU run renders MuJoCo on its own GPU (worldmodels/render_device.py)."""

from worldmodels.render_device import egl_device_for


def test_each_local_rank_renders_on_its_own_gpu():
    assert egl_device_for({"LOCAL_RANK": "1"}, gpus=2) == "1"
    assert egl_device_for({"SLURM_LOCALID": "3"}, gpus=4) == "3"


def test_visible_devices_map_the_local_rank_to_the_machines_device_number():
    assert egl_device_for({"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "4,6"}, gpus=2) == "6"
    assert egl_device_for({"CUDA_VISIBLE_DEVICES": "4,6"}, gpus=2) == "4"  # the launcher's process: rank 0


def test_the_users_choice_no_gpu_and_unmappable_names_leave_mujocos_choice():
    assert egl_device_for({"LOCAL_RANK": "1", "MUJOCO_EGL_DEVICE_ID": "0"}, gpus=2) is None
    assert egl_device_for({"LOCAL_RANK": "1"}, gpus=0) is None  # Mesa's software EGL: one device
    assert egl_device_for({}, gpus=8) is None  # one process, every GPU visible: MuJoCo's default
    assert egl_device_for({"LOCAL_RANK": "0", "CUDA_VISIBLE_DEVICES": "GPU-8f2c"}, gpus=1) is None
