"""The codec benchmark's speed summary: encode + decode together, and the ratio to EnCodec's in the same run."""

from __future__ import annotations

import pytest

from tests.conftest import eval_script


def test_combined_speed_and_ratio_to_encodec():
    bench = eval_script("bench_codec")
    ours = {"threads": 2, "encode_xrt": 300.0, "decode_xrt": 150.0, "repeats": 9}
    encodec = {"threads": 2, "encode_xrt": 40.0, "decode_xrt": 40.0, "repeats": 9}
    assert bench.combined_xrt(ours) == pytest.approx(100.0)  # 10 s: 33 ms + 67 ms
    lines = bench.speed_summary([{"system": "speechlm-codec (1.00 kbps)", "speed": [ours]},
                                 {"system": "Codec2 1200"},
                                 {"system": "EnCodec 24 kHz arch.", "speed": [encodec]}])
    text = "\n".join(lines)
    assert "fastest of 9 repeats" in text
    assert "speechlm-codec (1.00 kbps): 100x on 2 threads (5.0x EnCodec)" in text
    assert "EnCodec 24 kHz arch.: 20x on 2 threads" in text and "Codec2" not in text
    assert bench.speed_summary([{"system": "Codec2 1200"}]) == []


def test_speed_worker_reports_the_decode_precision_it_ran(tmp_path):
    import torch

    from speechlm.codec.model import CodecConfig
    from speechlm.codec.neural import NeuralCodec
    from speechlm.vocoder.model import VocoderConfig, native_bf16

    bench = eval_script("bench_codec")
    folder = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).save_pretrained(tmp_path / "codec")
    threads = torch.get_num_threads()
    try:
        plain = bench.speed_worker(str(folder), 1, 0.5)
        bf16 = bench.speed_worker(f"{folder}+bf16", 1, 0.5)
    finally:
        torch.set_num_threads(threads)
    assert plain["decode_precision"] == "fp32"
    assert bf16["decode_precision"] == ("bf16" if native_bf16(torch.device("cpu")) else "fp32 (no native bf16)")
    line = bench.speed_summary([{"system": "ours", "speed": [bf16]}])[-1]
    assert line.startswith(f"- ours [decoder in {bf16['decode_precision']}]: ")
    assert bench.speed_worker("encodec_24khz:random", 1, 0.5)["decode_precision"] is None


def test_machine_names_the_cpu_and_its_instruction_set():
    """Speed rows depend on the CPU's vector instructions (a bf16 decoder needs AVX512-BF16 or AMX), so the
    report says which it had; reports written before the ISA was recorded still get a heading."""
    import os

    bench = eval_script("bench_codec")
    m = bench.machine()
    assert m["cores"] == os.cpu_count() and m["cpu"]
    assert m["isa"] in (*bench.ISA_FLAGS, None)
    assert bench.machine_line({"cpu": "AMD EPYC", "cores": 2, "isa": "avx2"}) == "2 cores, AMD EPYC, avx2"
    assert bench.machine_line({"cpu": "x86_64", "cores": 2}) == "2 cores, x86_64"
