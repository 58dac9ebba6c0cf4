"""Exemplar prompts: --exemplar and prompt-file parsing, and the bad-input checks run before
any work starts (each a one-line UsageError naming the offending value)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vidlake.config import IndexConfig
from vidlake.errors import UsageError
from vidlake.model.prompts import (
    check_prompts,
    load_prompt_file,
    normalised_boxes,
    parse_exemplars,
    with_reference_frames,
)
from vidlake.records import Prompt


def config_for(sources, prompts=(), concepts=("red square",), model="synthetic:color", **kw):
    return IndexConfig(
        sources=tuple(sources),
        index_uri="/tmp/unused-index",
        concepts=tuple(concepts),
        model=model,
        prompts=tuple(prompts),
        **kw,
    )


def test_boxes_on_one_frame_form_one_prompt_in_order_of_appearance(tmp_path):
    video = str(tmp_path / "v.mp4")
    prompts = parse_exemplars(
        [
            f"{video}:3:10,20,30,40",
            "s3://bucket/a:b.mp4:7:1,2,3,4",
            f"{video}:3:50,60,70,80:neg",
        ],
        names=["My Dog"],
        texts=["dog"],
    )
    assert [p.name for p in prompts] == ["my dog", "exemplar-2"]
    dog, other = prompts
    assert (dog.video_uri, dog.frame_index, dog.text) == (video, 3, "dog")
    assert dog.boxes == ((10, 20, 30, 40), (50, 60, 70, 80))
    assert dog.positive == (True, False)
    assert (other.video_uri, other.frame_index, other.text) == ("s3://bucket/a:b.mp4", 7, None)


def test_relative_exemplar_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (prompt,) = parse_exemplars(["clip.mp4:0:1,1,5,5"])
    assert prompt.video_uri == str(tmp_path / "clip.mp4")


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("video.mp4:1:10,20,30", "10,20,30"),
        ("video.mp4:x:10,20,30,40", "'x'"),
        ("video.mp4:10,20,30,40", "video.mp4:10,20,30,40"),
        ("video.mp4:-1:10,20,30,40", "-1"),
        ("video.mp4:1:a,b,c,d", "a,b,c,d"),
    ],
)
def test_malformed_exemplar_is_a_one_line_usage_error(spec, named):
    with pytest.raises(UsageError) as info:
        parse_exemplars([spec])
    assert named in str(info.value) and "\n" not in str(info.value)


def test_prompt_file_gives_text_and_exemplar_prompts(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(
        json.dumps(
            {
                "prompts": [
                    {"name": "Hound", "text": "dog"},
                    {
                        "name": "star",
                        "video": "v.mp4",
                        "frame": 2,
                        "boxes": [[1, 2, 3, 4]],
                        "negative_boxes": [[5, 6, 7, 8]],
                    },
                ]
            }
        )
    )
    hound, star = load_prompt_file(path)
    assert hound == Prompt(name="hound", text="dog")
    assert star.boxes == ((1, 2, 3, 4), (5, 6, 7, 8)) and star.positive == (True, False)
    assert star.video_uri.endswith("v.mp4") and star.frame_index == 2


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("not json", "not valid JSON"),
        ('{"prompts": 3}', "list of prompts"),
        ('[{"text": "dog"}]', "has no name"),
        ('[{"name": "a", "boxes": [[1, 2, 3, 4]]}]', "'video' and 'frame'"),
        ('[{"name": "a", "colour": "red"}]', "colour"),
    ],
)
def test_bad_prompt_file_is_a_usage_error(tmp_path, content, named):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=named):
        load_prompt_file(path)


def test_empty_concept_list_is_a_usage_error(synthetic_corpus):
    with pytest.raises(UsageError, match="no concepts given"):
        config_for([synthetic_corpus[0].uri], concepts=())


def test_exemplar_alone_is_enough(synthetic_corpus):
    video = synthetic_corpus[0]
    prompts = parse_exemplars([f"{video.uri}:0:20,15,60,55"])
    config = config_for([video.uri], prompts, concepts=())
    check_prompts(config)
    assert config.vocabulary == ("exemplar-1",)


@pytest.mark.parametrize(
    ("prompt", "named"),
    [
        (
            Prompt("p", boxes=((30, 20, 10, 40),), positive=(True,), video_uri="v", frame_index=0),
            "30,20,10,40",
        ),
        (
            Prompt("p", boxes=((1, 1, 5, 5),), positive=(False,), video_uri="v", frame_index=0),
            "needs a positive box or a text",
        ),
        (Prompt("red square", text="red"), "'red square' is used twice"),
    ],
)
def test_inconsistent_prompts_fail_when_the_config_is_built(synthetic_corpus, prompt, named):
    with pytest.raises(UsageError, match=named):
        config_for([synthetic_corpus[0].uri], [prompt])


def test_box_outside_the_frame_names_the_box(synthetic_corpus):
    video = synthetic_corpus[0]  # 160x120
    prompts = parse_exemplars([f"{video.uri}:0:100,50,170,90"])
    with pytest.raises(UsageError) as info:
        check_prompts(config_for([video.uri], prompts))
    message = str(info.value)
    assert "100,50,170,90" in message and "160x120" in message and "\n" not in message


def test_frame_past_the_video_names_the_frame(synthetic_corpus):
    video = synthetic_corpus[0]  # 96 frames
    prompts = parse_exemplars([f"{video.uri}:96:10,10,20,20"])
    with pytest.raises(UsageError) as info:
        check_prompts(config_for([video.uri], prompts))
    assert "frame 96" in str(info.value) and "96 frames" in str(info.value)


def test_unreadable_exemplar_video_is_a_usage_error(synthetic_corpus, tmp_path):
    prompts = parse_exemplars([f"{tmp_path / 'missing.mp4'}:0:1,1,5,5"])
    with pytest.raises(UsageError, match="missing.mp4"):
        check_prompts(config_for([synthetic_corpus[0].uri], prompts))


def test_concept_longer_than_the_text_context_by_estimate(synthetic_corpus):
    long = " ".join(["red"] * 31)  # 31 words + BOS + EOS > 32 tokens whatever the tokenizer
    with pytest.raises(UsageError, match="longer than SAM 3's text context of 32 tokens"):
        config_for([synthetic_corpus[0].uri], concepts=(long,))


def test_concept_longer_than_the_text_context_by_the_checkpoints_tokenizer(
    synthetic_corpus, tiny_sam3_dir
):
    # 11 words (13 by the estimate), but the tiny vocabulary splits "zqx" into 3 tokens: 35.
    long = " ".join(["zqx"] * 11)
    config = config_for([synthetic_corpus[0].uri], concepts=(long,), model=str(tiny_sam3_dir))
    with pytest.raises(UsageError) as info:
        check_prompts(config)
    assert "'zqx zqx" in str(info.value) and "32 tokens" in str(info.value)
    check_prompts(config_for([synthetic_corpus[0].uri], model=str(tiny_sam3_dir)))


def test_reference_frames_are_decoded_at_native_size_once(synthetic_corpus):
    video = synthetic_corpus[2]
    prompts = parse_exemplars(
        [f"{video.uri}:5:20,10,40,50", f"{video.uri}:5:0,0,10,10:neg"], names=["x"]
    )
    (loaded,) = with_reference_frames(prompts)
    assert loaded.reference_frame.shape == (video.height, video.width, 3)
    assert np.abs(loaded.reference_frame.astype(int) - video.render(5)).mean() < 3
    # (cx, cy, w, h) normalised by the reference frame's size, as SAM 3's processor gives them.
    np.testing.assert_allclose(
        normalised_boxes(loaded)[0], [30 / 160, 30 / 120, 20 / 160, 40 / 120], rtol=1e-6
    )


def test_cli_rejects_a_bad_exemplar_in_one_line_before_any_work(synthetic_corpus, tmp_path):
    video = synthetic_corpus[0]
    vidlake = str(Path(sys.executable).parent / "vidlake")
    args = ["index", video.uri, "--index", str(tmp_path / "idx"), "--model", "synthetic:color"]
    proc = subprocess.run(
        [vidlake, *args, "--exemplar", f"{video.uri}:0:10,20,30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "10,20,30" in lines[0], proc.stderr
    assert not (tmp_path / "idx").exists()
