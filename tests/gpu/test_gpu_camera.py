"""wan_camera guide on a CUDA GPU: the tiny models in bfloat16, and Wan2.1-T2V-1.3B where its
weights are on disk (skipped elsewhere). The CPU tests (tests/backends/test_camera_guide.py) prove the
method's bookkeeping; these prove it on the device and in the dtype the users render in."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deforum_wan.backends.base import BackendOptions, GenerateRequest  # noqa: E402
from deforum_wan.backends.camera_guide import PathGuidance, PathGuide  # noqa: E402
from deforum_wan.backends.chain import load_backend  # noqa: E402
from deforum_wan.backends.diffusers_backend import transformers_of  # noqa: E402
from deforum_wan.models.registry import get_model  # noqa: E402
from deforum_wan.models.weights import locate_weights  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def pan(frames, height, width, seed=0):
    anchor = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    video = np.stack([np.roll(anchor, 2 * t, axis=1) for t in range(frames)])
    cover = np.ones((frames, height, width), np.float32)
    for t in range(frames):
        cover[t, :, : 2 * t] = 0
    return PathGuide(video, cover, 0.2, 0.5)


@pytest.mark.parametrize("model_id", ["tiny-random", "tiny-random-a14b", "tiny-random-vace"])
def test_guidance_holds_the_path_on_cuda_in_bfloat16(model_id, tiny_models_dir):
    options = BackendOptions(models_dir=str(tiny_models_dir), dtype="bfloat16")
    backend, _ = load_backend(get_model(model_id), "diffusers", options)
    with backend:
        req = GenerateRequest(mode="t2v", prompt="a fox", negative_prompt="", num_frames=9, width=32, height=32,
                              seed=3, guidance_scale=1.0, steps=10, path_guide=pan(9, 32, 32))
        seen = []
        hooks = [m.register_forward_pre_hook(lambda m, a, k: seen.append(k["hidden_states"][:, :16].float().clone()),
                                             with_kwargs=True) for m in transformers_of(backend.pipe)]
        try:
            frames = backend.generate(req)
        finally:
            for h in hooks:
                h.remove()
        assert frames.shape == (9, 32, 32, 3) and np.isfinite(frames).all()
        assert len(seen) == 8  # 10 steps, 2 skipped
        ref = PathGuidance(backend.pipe, req.path_guide, 10, req.seed, backend.device)
        with ref.schedule(backend.pipe.scheduler):
            backend.pipe.scheduler.set_timesteps(10, device=backend.device)
        mask = ref.mask.expand_as(ref.clean) > 0.5
        for k in (1, 2, 3):  # locked until step 5 of 10
            target = ref.noised(ref.sigmas[k]).to(torch.bfloat16).float()  # the transformer's input dtype
            torch.testing.assert_close(seen[k][mask], target[mask], rtol=0, atol=0)


def test_real_t2v_1_3b_follows_a_pan_at_480p():
    spec = get_model("wan2.1-t2v-1.3b")
    opts = BackendOptions(models_dir=os.environ.get("DEFORUM_WAN_MODELS_DIR"))
    if locate_weights(spec, opts.models_dir, "diffusers") is None:
        pytest.skip("wan2.1-t2v-1.3b weights are not on disk")
    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.adherence import measure

    backend, _ = load_backend(spec, "diffusers", opts)
    with backend:
        still = backend.generate(GenerateRequest(mode="t2v", prompt="a harbour town at dusk, wide shot",
                                                 negative_prompt="", num_frames=1, width=832, height=480, seed=5,
                                                 guidance_scale=5.0, steps=30))[0]
        camera = load_settings({"W": 832, "H": 480, "max_frames": 40, "animation_mode": "2D", "zoom": "0: (1)",
                                "translation_x": "0: (3)", "prompts": {"0": "a"}}).camera
        from deforum_wan.render.warp import CameraPath

        times = [float(t) for t in range(33)]
        warped, covers = CameraPath(camera, (still * 255).astype(np.uint8), 0.0).at(times)
        guide = PathGuide(np.stack(warped).astype(np.float32) / 255, np.stack(covers), 0.04, 0.10)
        frames = backend.generate(GenerateRequest(mode="t2v", prompt="a harbour town at dusk, wide shot",
                                                  negative_prompt="", num_frames=33, width=832, height=480, seed=5,
                                                  guidance_scale=5.0, steps=30, path_guide=guide))
    result = measure(camera, [(f * 255).astype(np.uint8) for f in frames], [(0, 0, 33)])
    assert result.pairs > 20 and result.px < 2.0, result.describe()  # a 3 px/frame pan, followed


def test_real_t2v_1_3b_follows_a_hybrid_videos_pan_at_480p(tmp_path):
    """Hybrid motion: a still camera, the path moved by a synthetic video's optical flow (a
    3 px/frame pan), measured against that motion."""
    spec = get_model("wan2.1-t2v-1.3b")
    opts = BackendOptions(models_dir=os.environ.get("DEFORUM_WAN_MODELS_DIR"))
    if locate_weights(spec, opts.models_dir, "diffusers") is None:
        pytest.skip("wan2.1-t2v-1.3b weights are not on disk")
    from motion_video import moving_frames, write_video

    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.adherence import measure
    from deforum_wan.render.hybrid_motion import video_motion
    from deforum_wan.render.warp import CameraPath

    video = tmp_path / "pan.mp4"
    write_video(video, moving_frames(33, 832, 480, (3.0, 0.0)))
    settings = load_settings({"W": 832, "H": 480, "animation_mode": "2D", "zoom": "0: (1)", "prompts": {"0": "a"},
                              "hybrid_motion": "Optical Flow", "hybrid_flow_method": "DIS Medium",
                              "video_init_path": str(video)}, read_video=True)
    backend, _ = load_backend(spec, "diffusers", opts)
    with backend:
        request = dict(prompt="a harbour town at dusk, wide shot", negative_prompt="", width=832, height=480, seed=5,
                       guidance_scale=5.0, steps=30)
        still = backend.generate(GenerateRequest(mode="t2v", num_frames=1, **request))[0]
        path = CameraPath(settings.camera, (still * 255).astype(np.uint8), 0.0,
                          motion=video_motion(settings, 832, 480))
        warped, covers = path.at([float(t) for t in range(33)])
        guide = PathGuide(np.stack(warped).astype(np.float32) / 255, np.stack(covers), 0.04, 0.10)
        frames = backend.generate(GenerateRequest(mode="t2v", num_frames=33, path_guide=guide, **request))
    result = measure(settings.camera, [(f * 255).astype(np.uint8) for f in frames], [(0, 0, 33)],
                     video_motion(settings, 832, 480))
    assert result.pairs > 20 and result.px < 2.0, result.describe()  # the video's pan, followed
