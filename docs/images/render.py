"""Render the picture in README.md: the plan of examples/qwen2_vl_ocr.yaml, drawn by vlora and rendered to PNG
with cairosvg (tests/integration/test_draw.py checks that both files are what this writes).

    python docs/images/render.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SPEC = ROOT / "examples" / "qwen2_vl_ocr.yaml"


def svg() -> str:
    from vlora_core import resolve
    from vlora_core.draw import draw_svg

    return draw_svg(resolve(SPEC))


def main() -> None:
    import cairosvg

    text = svg()
    (HERE / "qwen2_vl_ocr.svg").write_text(text, encoding="utf-8")
    cairosvg.svg2png(bytestring=text.encode(), write_to=str(HERE / "qwen2_vl_ocr.png"))
    print(f"wrote {HERE / 'qwen2_vl_ocr.svg'} and {HERE / 'qwen2_vl_ocr.png'}")


if __name__ == "__main__":
    main()
