"""Backends on the tiny Wan models: the real diffusers pipelines, run on the CPU."""
import shutil
import sys

import numpy as np
import pytest
from helpers import FIXTURES

from deforum_wan.backends.base import Backend, BackendOptions, GenerateRequest
from deforum_wan.backends.chain import load_backend
from deforum_wan.backends.diffusers_backend import DiffusersBackend
from deforum_wan.errors import BackendError, Interrupted, WanError
from deforum_wan.models.registry import get_model

SIZE = 32
FRAMES = 5


def request(mode="t2v", seed=1, **kw):
    base = dict(mode=mode, prompt="a red fox in the snow", negative_prompt="blurry", num_frames=FRAMES,
                width=SIZE, height=SIZE, seed=seed, guidance_scale=5.0, steps=2)
    base.update(kw)
    return GenerateRequest(**base)


def image(seed=0, size=SIZE):
    return np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)


def check_frames(frames, req):
    assert frames.shape == (req.num_frames, req.height, req.width, 3)
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
    assert frames.min() >= 0.0 and frames.max() <= 1.0 and frames.std() > 0


@pytest.fixture
def options(tiny_models_dir):
    return BackendOptions(models_dir=str(tiny_models_dir))


@pytest.fixture(scope="module")
def t2v(tiny_models_dir):
    backend, _ = load_backend(get_model("tiny-random"), "auto", BackendOptions(models_dir=str(tiny_models_dir)))
    yield backend
    backend.close()


CASES = [
    ("tiny-random", "t2v", {}),
    ("tiny-random-i2v", "i2v", {"image": image()}),
    ("tiny-random-flf2v", "i2v", {"image": image(), "last_image": image(1)}),
    ("tiny-random-ti2v", "t2v", {}),
    ("tiny-random-ti2v", "i2v", {"image": image()}),
    ("tiny-random-vace", "t2v", {}),
    ("tiny-random-vace", "i2v", {"image": image()}),
    ("tiny-random-vace", "i2v", {"context": np.stack([image(2), image(3)]), "last_image": image(4)}),
    ("tiny-random-a14b", "t2v", {"guidance_scale_2": 3.0}),
]


@pytest.mark.parametrize("model_id,mode,extra", CASES, ids=[f"{m}-{mode}-{i}" for i, (m, mode, _) in enumerate(CASES)])
def test_each_tiny_model_through_the_auto_chain(options, model_id, mode, extra):
    backend, report = load_backend(get_model(model_id), "auto", options)
    try:
        assert backend.name == "diffusers" and isinstance(backend, DiffusersBackend)
        assert report[0] == ("official", "skipped: no official-layout weights for tiny models")
        assert report[1][0] == "diffusers" and report[1][1].startswith("chosen")
        steps = []
        req = request(mode, **extra)
        frames = backend.generate(req, on_step=lambda done, total: steps.append((done, total)))
        check_frames(frames, req)
        assert steps == [(1, 2), (2, 2)]
    finally:
        backend.close()


def test_seed_decides_the_noise(t2v):
    a = t2v.generate(request(seed=7))
    b = t2v.generate(request(seed=7))
    c = t2v.generate(request(seed=8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_prompt_guidance_and_shift_reach_the_model(t2v):
    base = t2v.generate(request())
    assert np.abs(base - t2v.generate(request(prompt="a blue whale"))).max() > 1e-4
    assert np.abs(base - t2v.generate(request(guidance_scale=1.0))).max() > 1e-4
    shifted = t2v.generate(request(shift=1.0))
    assert t2v.pipe.scheduler.config.flow_shift == 1.0
    assert np.abs(base - shifted).max() > 1e-4
    t2v.generate(request())
    assert t2v.pipe.scheduler.config.flow_shift == get_model("tiny-random").shift


def test_the_pipeline_gets_the_request_as_a_bare_diffusers_call_does(t2v, tiny_models_dir):
    """The backend's frames are those of diffusers' own WanPipeline called with the request's
    prompt, negative prompt, size, steps, guidance and seed (for two negative prompts)."""
    import torch
    from diffusers import UniPCMultistepScheduler, WanPipeline

    pipe = WanPipeline.from_pretrained(str(tiny_models_dir / "tiny-random"))
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config,
                                                         flow_shift=get_model("tiny-random").shift)
    pipe.set_progress_bar_config(disable=True)

    def bare(req):
        out = pipe(prompt=req.prompt, negative_prompt=req.negative_prompt, height=req.height, width=req.width,
                   num_frames=req.num_frames, num_inference_steps=req.steps, guidance_scale=req.guidance_scale,
                   generator=torch.Generator("cpu").manual_seed(req.seed), output_type="np")
        return np.clip(out.frames[0], 0, 1)

    blurry, fox = request(negative_prompt="blurry"), request(negative_prompt="a red fox in the snow")
    assert np.abs(bare(blurry) - bare(fox)).max() > 1e-4  # the negative prompt shows
    for req in (blurry, fox):
        np.testing.assert_allclose(t2v.generate(req), bare(req), rtol=0, atol=1e-6)


def test_two_experts_take_their_own_guidance(options):
    backend, _ = load_backend(get_model("tiny-random-a14b"), "diffusers", options)
    with backend:
        assert backend.pipe.transformer_2 is not None
        low = backend.generate(request(guidance_scale_2=1.0))
        high = backend.generate(request(guidance_scale_2=9.0))
        assert np.abs(low - high).max() > 1e-4


def test_ti2v_switches_pipelines_over_shared_modules(options):
    opts = BackendOptions(models_dir=options.models_dir, dtype="bfloat16")
    backend, _ = load_backend(get_model("tiny-random-ti2v"), "diffusers", opts)
    with backend:
        import torch

        t2v_frames = backend.generate(request())
        t2v_pipe = backend.pipe
        i2v_frames = backend.generate(request("i2v", image=image()))
        assert type(backend.pipe).__name__ == "WanImageToVideoPipeline" and backend.pipe is not t2v_pipe
        assert backend.pipe.transformer is t2v_pipe.transformer and backend.pipe.config.expand_timesteps
        assert backend.pipe.transformer.dtype == torch.bfloat16  # not upcast by the switch
        assert backend.pipe.vae.dtype == torch.float32
        check_frames(t2v_frames, request())
        check_frames(i2v_frames, request())
        np.testing.assert_array_equal(backend.generate(request()), t2v_frames)


def test_should_stop_interrupts_at_the_next_step(t2v):
    steps = []
    with pytest.raises(Interrupted, match="step 1 of 2"):
        t2v.generate(request(), on_step=lambda d, n: steps.append(d), should_stop=lambda: bool(steps))
    assert steps == [1]
    with pytest.raises(Interrupted, match="before the first step"):
        t2v.generate(request(), should_stop=lambda: True)
    check_frames(t2v.generate(request()), request())  # still usable afterwards


def test_requests_a_model_cannot_serve_are_refused(t2v, options):
    with pytest.raises(WanError, match="4n"):
        t2v.generate(request(num_frames=8))
    with pytest.raises(WanError, match="multiples of 16"):
        t2v.generate(request(width=40))
    with pytest.raises(WanError, match="cannot continue from an image"):
        t2v.generate(request("i2v", image=image()))
    with pytest.raises(WanError, match="t2v takes no image"):
        t2v.generate(request(image=image()))
    backend, _ = load_backend(get_model("tiny-random-i2v"), "diffusers", options)
    with backend:
        with pytest.raises(WanError, match="needs an image"):
            backend.generate(request("i2v"))
        with pytest.raises(WanError, match="32x32"):
            backend.generate(request("i2v", image=image(size=48)))
        with pytest.raises(WanError, match="cannot start from text"):
            backend.generate(request("t2v"))
    backend, _ = load_backend(get_model("tiny-random-ti2v"), "diffusers", options)
    with backend:
        with pytest.raises(WanError, match="multiples of 32"):
            backend.generate(request(width=48, height=48))


def test_official_alone_fails_with_its_reason(options):
    with pytest.raises(BackendError) as err:
        load_backend(get_model("tiny-random"), "official", options)
    lines = str(err.value).splitlines()
    assert lines[0] == "no backend could load tiny-random (tried official):"
    assert lines[1:] == ["  official: no official-layout weights for tiny models"]


def test_auto_chain_lists_every_reason_when_nothing_loads(tmp_path, isolated_hf_cache):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU refusal is what this checks")
    options = BackendOptions(models_dir=str(tmp_path))
    with pytest.raises(BackendError) as err:
        load_backend(get_model("wan2.1-t2v-1.3b"), "auto", options)
    lines = str(err.value).splitlines()
    assert lines[0] == "no backend could load wan2.1-t2v-1.3b (tried official, diffusers):"
    assert len(lines) == 3
    assert lines[1].startswith("  official: needs CUDA")
    assert lines[2].startswith("  diffusers: weights for wan2.1-t2v-1.3b (Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert lines[2].endswith("run: python -m deforum_wan download wan2.1-t2v-1.3b")
    # a person reads the last backend's reason first (the weights to download), not "needs CUDA"
    from deforum_wan.errors import describe_error

    said = describe_error(err.value)
    assert said.startswith("no backend could load wan2.1-t2v-1.3b: diffusers: weights for wan2.1-t2v-1.3b")
    assert said.endswith("(also tried official: every reason is in the log)") and "CUDA" not in said
    with pytest.raises(WanError, match="backend must be one of"):
        load_backend(get_model("tiny-random"), "onnx", options)


def test_real_model_id_loads_weights_from_the_models_dir(tiny_models_dir, tmp_path, isolated_hf_cache):
    """The path real weights take: <models_dir>/<repo name>, loaded by the same code."""
    shutil.copytree(tiny_models_dir / "tiny-random", tmp_path / "Wan2.1-T2V-1.3B-Diffusers")
    spec = get_model("wan2.1-t2v-1.3b")
    backend, report = load_backend(spec, "auto", BackendOptions(models_dir=str(tmp_path)))
    with backend:
        assert report[0][0] == "official" and report[0][1].startswith("skipped: ")
        assert backend.path == tmp_path / "Wan2.1-T2V-1.3B-Diffusers"
        check_frames(backend.generate(request()), request())
        assert backend.pipe.scheduler.config.flow_shift == spec.shift  # the registry's default


def test_lora_is_loaded_and_weighted(options, tiny_lora):
    spec = get_model("tiny-random")

    def render(loras):
        opts = BackendOptions(models_dir=options.models_dir, loras=loras)
        backend, _ = load_backend(spec, "diffusers", opts)
        with backend:
            return backend.generate(request())

    plain = render([])
    off = render([(str(tiny_lora), 0.0, "both")])
    on = render([(str(tiny_lora), 1.0, "both")])
    strong = render([(str(tiny_lora), 2.0, "both")])
    np.testing.assert_allclose(off, plain, atol=1e-6)
    assert np.abs(on - plain).max() > 1e-3 and np.abs(strong - on).max() > 1e-3


def test_lora_paths_are_checked(options, tiny_lora, tmp_path):
    spec = get_model("tiny-random")
    with pytest.raises(WanError, match="only .safetensors"):
        load_backend(spec, "diffusers", BackendOptions(models_dir=options.models_dir, loras=[("x.bin", 1.0, "both")]))
    with pytest.raises(BackendError, match="cannot read LoRA file .*no.safetensors: No such file"):
        load_backend(spec, "diffusers", BackendOptions(models_dir=options.models_dir,
                                                       loras=[(str(tmp_path / "no.safetensors"), 1.0, "both")]))


def test_offload_vae_tiling_and_attention_options_on_cpu(options):
    opts = BackendOptions(models_dir=options.models_dir, offload="model", vae_tiling=True,
                          attention="no-such-kernel", dtype="float32")
    backend, report = load_backend(get_model("tiny-random"), "diffusers", opts)
    with backend:
        notes = [text for name, text in report if name == "diffusers"][1:]
        assert any("offload 'model' does not apply on the CPU" in n for n in notes)
        assert "attention 'no-such-kernel' is not a diffusers attention backend; using SDPA" in notes
        assert backend.pipe.vae.use_tiling
        # Small tiles so 32x32 frames really go through the tiled decoder.
        backend.pipe.vae.enable_tiling(tile_sample_min_height=16, tile_sample_min_width=16,
                                       tile_sample_stride_height=8, tile_sample_stride_width=8)
        check_frames(backend.generate(request()), request())
    opts = BackendOptions(models_dir=options.models_dir, attention="sdpa")
    backend, report = load_backend(get_model("tiny-random"), "diffusers", opts)
    with backend:
        # diffusers chosen, nothing to note but what each part holds and where
        assert [text.split(":")[0] for _, text in report[1:]] == ["transformer", "text_encoder", "vae"]
        assert all(text.endswith("in memory, on CPU") for _, text in report[1:])
        check_frames(backend.generate(request()), request())


def test_bad_options_are_refused(options):
    # Only what the settings reader does not check (offload, cache, LoRA weights, ... are
    # refused by their keys' readers: test_keys, test_settings).
    cases = [(dict(dtype="int8"), "dtype must be auto"), (dict(vae_dtype="fp8"), "vae_dtype must be auto")]
    for bad, message in cases:
        with pytest.raises(WanError, match=message):
            load_backend(get_model("tiny-random"), "diffusers", BackendOptions(models_dir=options.models_dir, **bad))


def test_close_frees_the_pipeline(options):
    backend, _ = load_backend(get_model("tiny-random"), "diffusers", options)
    backend.close()
    assert backend.pipe is None
    with pytest.raises(WanError, match="closed"):
        backend.generate(request())
    backend.close()  # twice is fine


# --- official backend: what can be checked without CUDA -----------------------------


def test_official_refuses_without_cuda_before_importing_wan(tmp_path):
    torch = pytest.importorskip("torch")
    import sys

    if torch.cuda.is_available():
        pytest.skip("checks the CPU refusal")
    from deforum_wan.backends.official import OfficialBackend

    for options in (BackendOptions(models_dir=str(tmp_path)),
                    BackendOptions(models_dir=str(tmp_path), device="cpu",
                                   official_repo_path=str(tmp_path / "Wan2.1"))):
        with pytest.raises(BackendError, match="^official: needs CUDA"):
            OfficialBackend(get_model("wan2.2-ti2v-5b"), options)
    assert "wan" not in sys.modules
    with pytest.raises(BackendError, match="LoRA is not supported"):
        OfficialBackend(get_model("wan2.1-t2v-1.3b"), BackendOptions(loras=[("a.safetensors", 1.0, "both")]))


def test_official_output_conversion_and_vace_inputs():
    torch = pytest.importorskip("torch")
    from deforum_wan.backends.official import _to_frames, _vace_tensors

    req = request(num_frames=5, width=48, height=32)
    video = torch.linspace(-1.2, 1.2, 3 * 5 * 32 * 48).reshape(3, 5, 32, 48)
    frames = _to_frames(video, req)
    assert frames.shape == (5, 32, 48, 3) and frames.dtype == np.float32
    assert frames.min() == 0.0 and frames.max() == 1.0
    np.testing.assert_allclose(frames[2, 3, 4], (video[:, 2, 3, 4].clamp(-1, 1).numpy() + 1) / 2, atol=1e-6)
    # A slightly different size from the official size search is resized to the request.
    assert _to_frames(torch.zeros(3, 5, 48, 64), req).shape == (5, 32, 48, 3)

    first, last = image(size=32)[:, :32], image(1, size=32)
    req = request("i2v", num_frames=5, image=first, last_image=last)
    [frames], [masks] = _vace_tensors(req, torch.device("cpu"))
    assert frames.shape == (3, 5, 32, 32) and masks.shape == (1, 5, 32, 32)
    np.testing.assert_allclose(frames[:, 0].permute(1, 2, 0).numpy(), first * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(frames[:, -1].permute(1, 2, 0).numpy(), last * 2 - 1, atol=1e-6)
    assert masks[:, 0].max() == 0 and masks[:, -1].max() == 0 and masks[:, 1:-1].min() == 1
    assert frames[:, 1:-1].abs().max() == 0  # grey where the model generates


def test_the_official_experts_get_the_guidance_diffusers_gives_them():
    """diffusers applies guidance_scale to the high-noise expert and guidance_scale_2 to the
    low-noise one; run the official generate()'s own lines (fixture) on what the backend
    passes it and see each expert get the same."""
    torch = pytest.importorskip("torch")
    import importlib.util

    from deforum_wan.backends.official import guide_scale

    source = FIXTURES / "wan22_clone" / "wan" / "text2video.py"
    spec = importlib.util.spec_from_file_location("wan22_clone_text2video", source)
    text2video = importlib.util.module_from_spec(spec)  # not put in sys.modules: no `wan` is imported
    spec.loader.exec_module(text2video)
    official = text2video.WanT2V(config=None, checkpoint_dir=None)
    a14b = get_model("wan2.2-t2v-a14b")
    boundary = 0.875 * 1000  # the A14B config's boundary times its num_train_timesteps
    timesteps = torch.tensor([999.0, 900.0, 875.0, 874.0, 500.0, 1.0])
    for high, low in ((7.0, 2.0), (2.0, 7.0), (5.0, None)):
        req = request(guidance_scale=high, guidance_scale_2=low)
        picked = official.expert_and_guidance(guide_scale(req, a14b, two_experts=True), timesteps, boundary)
        want = {"high_noise_model": high, "low_noise_model": low if low is not None else a14b.guidance_2}
        assert {name for name, _ in picked} == set(want)
        assert all(g == want[name] for name, g in picked), picked
    one = guide_scale(request(guidance_scale=6.0), get_model("wan2.1-t2v-14b"), two_experts=False)
    assert official.expert_and_guidance(one, timesteps, boundary)[0][1] == 6.0


def naive_attention(q, k, v, k_lens=None, causal=False):
    import torch

    b, lq, n, c = q.shape
    lk = k.shape[1]
    k = k.repeat_interleave(n // k.shape[2], dim=2)
    v = v.repeat_interleave(n // v.shape[2], dim=2)
    scores = torch.einsum("bqnc,bknc->bnqk", q, k) / c ** 0.5
    allowed = torch.ones(b, 1, lq, lk, dtype=torch.bool)
    if k_lens is not None:
        allowed &= (torch.arange(lk)[None, :] < k_lens[:, None])[:, None, None, :]
    if causal:
        allowed &= torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bnqk,bknc->bqnc", scores.softmax(-1), v)


def test_sdpa_stand_in_matches_flash_attention_semantics():
    torch = pytest.importorskip("torch")
    from deforum_wan.backends.sdpa_attention import sdpa_flash_attention

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 7, 4, 8, generator=g)
    k = torch.randn(2, 11, 2, 8, generator=g)  # grouped-query: 4 query heads over 2 key heads
    v = torch.randn(2, 11, 2, 8, generator=g)
    k_lens = torch.tensor([11, 5])  # the second sample's context is padded after 5 tokens
    out = sdpa_flash_attention(q, k, v, k_lens=k_lens)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, naive_attention(q, k, v, k_lens), atol=1e-5, rtol=1e-5)
    # Padding beyond k_lens must not matter (the official SDPA fallback ignores k_lens).
    k2, v2 = k.clone(), v.clone()
    k2[1, 5:] += 100
    v2[1, 5:] -= 100
    torch.testing.assert_close(sdpa_flash_attention(q, k2, v2, k_lens=k_lens), out, atol=1e-5, rtol=1e-5)
    causal = sdpa_flash_attention(q, k, v, causal=True)
    torch.testing.assert_close(causal, naive_attention(q, k, v, causal=True), atol=1e-5, rtol=1e-5)


def test_official_refuses_torch_without_weights_only_load():
    from deforum_wan.backends.official import check_safe_torch_load
    from deforum_wan.errors import BackendError

    for old in ("2.1.2+cu121", "2.5.1", "1.13.0"):
        with pytest.raises(BackendError, match="torch >= 2.6"):
            check_safe_torch_load(old)
    for ok in ("2.6.0", "2.13.0+cpu", "3.0.0"):
        check_safe_torch_load(ok)


def test_the_wan22_wheel_is_refused_before_it_is_imported():
    """The PyPI `wan22` wheel defaults its classes to lightning=True (guidance off, fixed
    paths); a Wan2.2 clone does not. Fixtures: the two constructor signatures as shipped."""
    from deforum_wan.backends.official import import_wan, lightning_wheel

    assert lightning_wheel(FIXTURES / "wan22_clone" / "wan") is None
    reason = lightning_wheel(FIXTURES / "wan22_wheel" / "wan")
    assert "wan22` wheel" in reason and "lightning=True" in reason and "Wan-Video/Wan2.2" in reason
    with pytest.raises(BackendError, match="wan22` wheel"):
        import_wan(str(FIXTURES / "wan22_wheel"), "t2v-A14B")
    assert "wan" not in sys.modules or "wan22_wheel" not in str(getattr(sys.modules["wan"], "__file__", ""))


def _unique_bytes(*modules) -> int:
    """Bytes of distinct parameter storage across modules (a shared module counts once)."""
    seen, total = set(), 0
    for module in modules:
        for p in module.parameters():
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel() * p.element_size()
    return total


def test_a_continuation_model_shares_the_first_models_encoder_and_vae(options):
    """T2V + VACE (Wan2.1 both): one UMT5 encoder, tokenizer and VAE in memory, not two."""
    t2v, _ = load_backend(get_model("tiny-random"), "diffusers", options)
    vace, _ = load_backend(get_model("tiny-random-vace"), "diffusers", options, share_from=[t2v])
    alone, _ = load_backend(get_model("tiny-random-vace"), "diffusers", options)
    try:
        for name in ("text_encoder", "tokenizer", "vae"):
            assert getattr(vace.pipe, name) is getattr(t2v.pipe, name)
            assert getattr(alone.pipe, name) is not getattr(t2v.pipe, name)
        assert vace.shared == {"text_encoder": "tiny-random", "tokenizer": "tiny-random", "vae": "tiny-random"}
        assert any("shares" in note and "tiny-random" in note for note in vace.notes)
        encoder = _unique_bytes(t2v.pipe.text_encoder)
        both = _unique_bytes(t2v.pipe.text_encoder, vace.pipe.text_encoder)
        assert both == encoder and _unique_bytes(t2v.pipe.text_encoder, alone.pipe.text_encoder) == 2 * encoder
        # the shared pair still renders, and the same as a VACE loaded alone
        req = request("i2v", image=image())
        assert np.allclose(vace.generate(req), alone.generate(req), atol=1e-5)
    finally:
        for backend in (alone, vace, t2v):
            backend.close()


def test_only_identical_components_are_shared(options, tiny_models_dir):
    from deforum_wan.backends.diffusers_backend import same_component

    root = tiny_models_dir
    assert same_component(root / "tiny-random" / "text_encoder", root / "tiny-random-ti2v" / "text_encoder")
    assert not same_component(root / "tiny-random" / "vae", root / "tiny-random-ti2v" / "vae")  # Wan2.2 VAE
    assert not same_component(root / "tiny-random" / "transformer", root / "tiny-random-vace" / "transformer")
    t2v, _ = load_backend(get_model("tiny-random"), "diffusers", options)
    ti2v, _ = load_backend(get_model("tiny-random-ti2v"), "diffusers", options, share_from=[t2v])
    try:
        assert ti2v.pipe.text_encoder is t2v.pipe.text_encoder and ti2v.pipe.vae is not t2v.pipe.vae
    finally:
        ti2v.close()
        t2v.close()


class _Resident(Backend):
    """A backend of this project's interface holding ``size`` bytes on a device (pool policy)."""

    name = "resident"

    def __init__(self, model: str, size: int):
        self.spec, self.notes, self.size, self.parked = get_model(model), [], size, False

    def bytes_on_device(self) -> int:
        return 0 if self.parked else self.size

    def park(self) -> str:
        self.parked = True
        return f"{self.spec.id} parked"


def test_the_pool_parks_idle_models_largest_first_until_the_new_one_fits():
    from deforum_wan.backends.pool import BackendPool

    pool = BackendPool()
    small, big, active = _Resident("tiny-random", 2), _Resident("tiny-random-i2v", 8), _Resident("tiny-random-vace", 5)
    for key, backend in (("a", small), ("b", big), ("c", active)):
        pool.put(key, backend)
    assert pool.make_room(need=4, free=None) == []  # no accelerator: nothing to move
    assert pool.make_room(need=4, free=5) == [] and not big.parked  # it fits
    assert pool.make_room(need=10, free=3, active=active) == ["tiny-random-i2v parked"]
    assert big.parked and not small.parked and not active.parked
    assert pool.make_room(need=20, free=3, active=active) == ["tiny-random parked"]  # all idle ones, never the active
    assert not active.parked


def test_wan22s_speech_and_animate_packages_are_named_in_one_line_before_import():
    """Wan2.2's wan/__init__.py imports its S2V and Animate pipelines (fixture: the file as
    shipped): what they need beyond requirements.txt is named, with the file listing it."""
    import importlib.util

    from deforum_wan.backends.official import import_wan, missing_extras

    lacking = [m for m in ("decord", "librosa", "peft") if importlib.util.find_spec(m) is None]
    if not lacking:
        pytest.skip("decord, librosa and peft are all installed here")
    reason = missing_extras(FIXTURES / "wan22_clone" / "wan")
    assert "\n" not in reason and f"need {' and '.join(lacking)} (not installed)" in reason
    for name in {"decord", "librosa", "peft"} - set(lacking):
        assert name not in reason
    files = {"requirements_s2v.txt": {"decord", "librosa"}, "requirements_animate.txt": {"decord", "peft"}}
    for file, modules in files.items():
        assert (f"-r {file}" in reason) == bool(modules & set(lacking))
    with pytest.raises(BackendError, match="^official: the wan package in .* imports its speech") as raised:
        import_wan(str(FIXTURES / "wan22_clone"), "t2v-A14B")
    assert "\n" not in str(raised.value)
    assert str(FIXTURES / "wan22_clone") not in sys.path  # refused before the clone is put on the path
    assert missing_extras(FIXTURES / "wan22_wheel" / "wan") is None  # a package without those pipelines
