"""Calibrates the similarity floor under which a phrase gets no candidate concepts.

A phrase that is not indexed gets the clips of its nearest indexed concepts as candidates
(vidlake.query.engine.ConceptIndex.candidates), ranked by the cosine similarity of MiniLM
embeddings (vidlake.query.text). MiniLM rates any two short noun phrases 0.2-0.5 alike, so
without a floor "umbrella" on an index of everyday objects gets the clips of whatever is
least unlike it. This script embeds a vocabulary (COCO's 80 classes plus the synthetic
shapes the tests index) and two labelled lists of phrases that are not in it: NEAR (a
synonym, a plural, a kind of an indexed concept) and FAR (nothing like any). For each floor
it counts near phrases kept and far phrases dropped, and prints the floor that gets the most
right (ties: the lowest), with the best similarity of each phrase.

    PYTHONPATH=src python bench/similarity_floor.py
"""

from __future__ import annotations

import numpy as np

from vidlake.query.text import CANDIDATE_MIN_SIMILARITY, text_encoder

COCO = (
    "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,"
    "stop sign,parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,"
    "backpack,umbrella,handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,"
    "baseball bat,baseball glove,skateboard,surfboard,tennis racket,bottle,wine glass,cup,fork,"
    "knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,hot dog,pizza,donut,cake,"
    "chair,couch,potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,keyboard,"
    "cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,"
    "hair drier,toothbrush"
).split(",")
SHAPES = ["red square", "blue circle", "green triangle", "yellow star"]
# Phrases (not in the vocabulary) whose nearest concept answers them: should get candidates.
NEAR = [
    "crimson square", "red box", "blue disc", "golden star", "red squares", "green triangles",
    "puppy", "automobile", "kitten", "pedestrian", "woman", "bike", "sailboat", "ship",
    "pickup truck", "sofa", "seat", "sparrow", "stop light", "television", "smartphone",
    "motorbike", "jet", "doughnut", "cellphone", "mug", "lorry", "pony", "calf", "sedan",
]  # fmt: skip
# Phrases nothing in the vocabulary is like: should get no candidates, but the command to
# index them. "umbrella" is far only from the shapes (COCO has it): it is tested there.
FAR = [
    "guitar", "harp", "microphone", "helicopter", "violin", "mountain", "lighthouse",
    "tractor", "volcano", "piano", "waterfall", "castle", "drone", "wheelchair", "tent",
    "candle", "flag", "ladder", "crane", "fireworks", "saxophone", "cactus", "windmill",
    "tornado", "surgeon", "glacier", "robot", "anchor", "treadmill", "microscope",
]  # fmt: skip


def best_similarities(phrases: list[str], vocabulary: list[str]) -> np.ndarray:
    encoder = text_encoder()
    return (encoder.encode(phrases) @ encoder.encode(vocabulary).T).max(axis=1)


def main() -> None:
    vocabulary = COCO + SHAPES
    near = best_similarities(NEAR, vocabulary)
    far = best_similarities(FAR, vocabulary)
    floors = np.round(np.arange(0.30, 0.70, 0.01), 2)
    right = [(int((near >= f).sum() + (far < f).sum()), f) for f in floors]
    best = max(right, key=lambda rf: (rf[0], -rf[1]))
    total = len(NEAR) + len(FAR)
    print(f"vocabulary: {len(vocabulary)} concepts (COCO's 80 classes and 4 shapes)")
    for name, sims in (("near", near), ("far", far)):
        print(
            f"{name} phrases: best similarity {sims.min():.3f}..{sims.max():.3f} "
            f"(median {np.median(sims):.3f})"
        )
    for floor in sorted({0.40, 0.45, 0.50, 0.52, 0.54, 0.56, 0.58, 0.60}):
        kept, dropped = int((near >= floor).sum()), int((far < floor).sum())
        print(f"floor {floor:.2f}: near kept {kept}/{len(NEAR)}, far dropped {dropped}/{len(FAR)}")
    print(
        f"best floor {best[1]:.2f}: {best[0]}/{total} right; vidlake's: {CANDIDATE_MIN_SIMILARITY}"
    )
    wrong = [(p, s) for p, s in zip(NEAR, near, strict=True) if s < CANDIDATE_MIN_SIMILARITY]
    wrong += [(p, s) for p, s in zip(FAR, far, strict=True) if s >= CANDIDATE_MIN_SIMILARITY]
    print("on the wrong side of vidlake's floor:", ", ".join(f"{p} {s:.2f}" for p, s in wrong))
    shapes = best_similarities(["red umbrella", "umbrella", "green triangle"], SHAPES[:2])
    print("against red square, blue circle: red umbrella {:.3f}, umbrella {:.3f}, "
          "green triangle {:.3f}".format(*shapes))  # fmt: skip
    print("command: PYTHONPATH=src python bench/similarity_floor.py")


if __name__ == "__main__":
    main()
