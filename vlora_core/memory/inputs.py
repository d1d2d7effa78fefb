"""The inputs of a simulated training step: a batch of token ids and, where asked, images as the family's
processor would hand them to the model. Image tokens per image come from the model's own config (image size,
patch size, merge size) and the processor's documented rules (Qwen2-VL's pixel bounds), each stated in the
result's ``assumed``. Token ids, grids and masks are real tensors (the step's bookkeeping reads their values);
pixels are made fake by the caller. Families without a rule here are refused by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import see_docs
from ..errors import UsageError

# Qwen2-VL / Qwen2.5-VL processors (image_processing_qwen2_vl.py): both sides rounded to a multiple of
# patch x merge, the pixel count kept within these bounds
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 56 * 56, 28 * 28 * 1280
# Qwen3-VL and Qwen3.5 use the same image processor with the bounds their checkpoints' preprocessor_config.json
# set (size: shortest_edge 65536, longest_edge 16777216 pixels) and 16-pixel patches
QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS = 65536, 16777216
QWEN_BOUNDS = {"qwen2_vl": (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS), "qwen2_5_vl": (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS),
               **dict.fromkeys(("qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"),
                               (QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS))}
# encoder-decoder families: the decoder reads the image through cross-attention (or the text encoder reads it,
# Florence-2); ``seq`` is then the decoder's (the target's) tokens, and the encoder side has its own length
ENCODER_DECODER_IMAGES = ("blip", "pix2struct", "vision-encoder-decoder", "florence2")
ENCODER_DECODER = (*ENCODER_DECODER_IMAGES, "udop")  # UDOP: text steps only
# GIT (image tokens the model puts before the text) and Idefics (images through gated cross-attention): a text
# model whose config is the top-level one, and whose forward takes no step without an image either
TEXT_AT_TOP = ("git", "idefics")
IMAGE_NEEDED = ("blip", "pix2struct", "vision-encoder-decoder", *TEXT_AT_TOP)
# and LLaVA with a Pixtral tower
IMAGE_FAMILIES = (*QWEN_BOUNDS, "llava", "llava_next", "llava_onevision", "gemma3", "paligemma", "mllama", "idefics3",
                  "smolvlm", "internvl", "mistral3", "fuyu", *ENCODER_DECODER_IMAGES, *TEXT_AT_TOP)
PIX2STRUCT_MAX_PATCHES = 2048  # Pix2Struct's image processor: max_patches (the default of its preprocess)
FLORENCE2_SIDE = 768  # Florence-2's published preprocessor_config.json: 768 x 768 images, image_seq_length 577
PROMPT_TOKENS = 8  # an encoder-decoder's text prompt beside the image (Florence-2's task prompt, "<OCR>")
FUYU_CANVAS = (1080, 1920)  # Fuyu's processor: larger images are scaled down to fit this height x width
INTERNVL_TILES = (1, 12)  # InternVL's dynamic tiling: 1 to 12 tiles of the tower's size, and a thumbnail
# Pixtral's processor: the longer side at most this many pixels (the checkpoints' preprocessor_config.json: 1024
# for Pixtral-12B, 1540 for Mistral-Small-3.x), then both sides rounded up to whole patches (x the merge)
PIXTRAL_LONGEST = {"llava": 1024, "mistral3": 1540}
IDEFICS3_MAX_SIDE = 4096  # the processor's bound on either side after the first resize


@dataclass
class StepInputs:
    """Keyword arguments of the model's forward (ints real, floats to be made fake), and what was assumed."""

    tensors: dict[str, Any]
    image_tokens: int = 0  # per image
    assumed: dict[str, Any] = field(default_factory=dict)
    real: tuple[str, ...] = ()  # float inputs that stay real (the model's code reads their values)
    images: int | None = None  # images per sequence where the family decides it (None: as asked)


def _qwen_resize(height: int, width: int, factor: int, bounds: tuple[int, int]) -> tuple[int, int]:
    low, high = bounds
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > high:
        beta = math.sqrt(height * width / high)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor)
                                                                             * factor)
    elif h * w < low:
        beta = math.sqrt(low / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def _mllama_tiles(height: int, width: int, most: int, tile: int) -> tuple[int, int]:
    """Mllama's processor (image_processing_mllama.py, get_optimal_tiled_canvas): of the arrangements of at most
    ``most`` tiles, the one the image fits by the least upscaling, else by the least downscaling, the smaller
    canvas on a tie; (tiles down, tiles across)."""
    arrangements = [(down, across) for down in range(1, most + 1) for across in range(1, most + 1)
                    if down * across <= most]
    scales = [min(down * tile / height, across * tile / width) for down, across in arrangements]
    up = [s for s in scales if s >= 1]
    chosen = min(up) if up else max(scales)
    return min((a for a, s in zip(arrangements, scales, strict=True) if s == chosen), key=lambda a: a[0] * a[1])


def _idefics3_tiles(height: int, width: int, tile: int) -> int:
    """Idefics3's and SmolVLM's processors (get_number_of_image_patches): the longer side scaled to four tiles
    (the shorter in proportion, made even), both sides rounded up to whole tiles; an image of more than one tile
    is those tiles and the whole image once more at one tile's size. The images the tower runs."""
    longest = 4 * tile
    if width >= height:
        w, h = longest, int(longest / (width / height))
        h += h % 2
    else:
        h, w = longest, int(longest * (width / height))
        w += w % 2
    if max(h, w) > IDEFICS3_MAX_SIDE:
        ratio = w / h
        h, w = (IDEFICS3_MAX_SIDE, int(IDEFICS3_MAX_SIDE * ratio)) if h > w else (int(IDEFICS3_MAX_SIDE / ratio),
                                                                                  IDEFICS3_MAX_SIDE)
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    return rows * cols + 1 if rows * cols > 1 else 1


def _anyres_tokens(height: int, width: int, best: tuple[int, int], side: int, patches: int,
                   most: int | None) -> int:
    """LLaVA-NeXT's and LLaVA-OneVision's processors (_get_unpadded_features): the tiles' patch grid, its padding
    taken off to the image's aspect ratio, one newline token per row; OneVision scales the grid down beyond
    ``most`` tiles' worth (anyres_max_N). The tokens beside the whole image's."""
    rows, cols = patches * (best[0] // side), patches * (best[1] // side)
    if width / height > cols / rows:
        rows -= (rows - int(round(height * (cols / width), 7))) // 2 * 2
    else:
        cols -= (cols - int(round(width * (rows / height), 7))) // 2 * 2
    tokens, newlines = rows * cols, rows
    if most is not None:
        ratio = math.sqrt(rows * cols / (most * patches**2))
        if ratio > 1.1:
            tokens, newlines = int(rows // ratio) * int(cols // ratio), int(rows // ratio)
    return tokens + newlines


def _internvl_tiles(height: int, width: int, tile: int, least: int, most: int) -> int:
    """InternVL's processor (GotOcr2's get_optimal_tiled_canvas with crop_to_patches): of the grids of ``least``
    to ``most`` tiles (fewest tiles first), the one closest to the image's aspect ratio, a tie going to more tiles
    while the image covers more than half of them; a grid of more than one tile adds a thumbnail."""
    grids = sorted(((across, down) for across in range(1, most + 1) for down in range(1, most + 1)
                    if least <= across * down <= most), key=lambda g: g[0] * g[1])
    best, best_diff = (1, 1), float("inf")
    for across, down in grids:
        diff = abs(width / height - across / down)
        if diff < best_diff:
            best, best_diff = (across, down), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * across * down:
            best = (across, down)
    return best[0] * best[1] + (1 if best[0] * best[1] > 1 else 0)


def step_inputs(config: Any, model_type: str | None, *, batch: int, seq: int, images: int = 0,
                image_size: tuple[int, int] | None = None) -> StepInputs:
    """``batch`` unpadded sequences of ``seq`` tokens (images' tokens included), ``images`` per sequence."""
    import torch

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    # ordinary text tokens: above the first few ids, below every special token the config names (image tokens)
    special = [v for k, v in config.to_dict().items() if isinstance(v, int) and not isinstance(v, bool)
               and (k.endswith("_token_id") or k.endswith("_token_index")) and v > 3]
    low, high = 3, min([int(text.vocab_size), 1000, *special])
    if model_type in TEXT_AT_TOP:
        return _text_at_top(config, model_type, batch=batch, seq=seq, images=images, low=low, high=high)
    if model_type in ENCODER_DECODER:
        return _encoder_decoder(config, model_type, batch=batch, seq=seq, images=images, image_size=image_size,
                                low=low, high=high)
    if not images:
        ids = torch.randint(low, high, (batch, seq))
        return StepInputs({"input_ids": ids, "labels": ids})
    vision = getattr(config, "vision_config", None)  # Fuyu has none
    pixtral = model_type == "mistral3" or (model_type == "llava" and getattr(vision, "model_type", "") == "pixtral")
    if model_type not in IMAGE_FAMILIES and not pixtral:
        raise UsageError(f"--images on {model_type}: vlora simulates image steps for "
                         + ", ".join(IMAGE_FAMILIES) + " so far",
                         hint="leave --images out for a text step (the vision tower's activations are then not in "
                         "it); what is simulated: " + see_docs("memory"))
    assumed: dict[str, Any] = {"images_per_sequence": images}
    extra: dict[str, Any] = {}
    if pixtral:  # any size: one token per patch (merged 2 x 2 in Mistral-3), rows ended by a break token
        step = vision.patch_size * getattr(config, "spatial_merge_size", 1)
        height, width = image_size or (448, 448)
        ratio = max(height, width) / PIXTRAL_LONGEST[model_type]
        if ratio > 1:
            height, width = int(height / ratio), int(width / ratio)
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        per_image = rows * cols
        pixels = torch.zeros(batch * images, vision.num_channels, rows * step, cols * step)
        extra["image_sizes"] = torch.tensor([[rows * step, cols * step]] * (batch * images))
        image_ids = ([config.image_token_index] * cols + [low]) * rows  # the break tokens are text
        assumed.update(image_size=f"{(image_size or (448, 448))[1]}x{(image_size or (448, 448))[0]}",
                       resized=f"{cols * step}x{rows * step}", longest_side=PIXTRAL_LONGEST[model_type])
    elif model_type in QWEN_BOUNDS:
        patch, merge, temporal = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        height, width = image_size or (448, 448)
        h, w = _qwen_resize(height, width, patch * merge, QWEN_BOUNDS[model_type])
        grid = (1, h // patch, w // patch)
        per_image = grid[1] * grid[2] // merge**2
        pixels = torch.zeros(batch * images * grid[1] * grid[2], vision.in_channels * temporal * patch * patch)
        extra["image_grid_thw"] = torch.tensor([grid] * (batch * images))
        image_ids = [config.vision_start_token_id, *[config.image_token_id] * per_image, config.vision_end_token_id]
        assumed.update(image_size=f"{width}x{height}", resized=f"{w}x{h}", patch=patch, merge=merge,
                       pixel_bounds="{}-{}".format(*QWEN_BOUNDS[model_type]))
    elif model_type == "llava":
        side = vision.image_size  # the processor resizes and crops every image to the tower's size
        per_image = (side // vision.patch_size) ** 2 + (0 if config.vision_feature_select_strategy == "default"
                                                        else 1)
        pixels = torch.zeros(batch * images, vision.num_channels, side, side)
        image_ids = [config.image_token_index] * per_image
        assumed.update(image_size=f"{side}x{side} (the processor's resize)", patch=vision.patch_size)
    elif model_type == "mllama":  # tiles: the canvas of whole tiles the processor fits the image on
        tile, most = vision.image_size, vision.max_num_tiles
        height, width = image_size or (tile, tile)
        ratio = list(_mllama_tiles(height, width, most, tile))
        tiles = ratio[0] * ratio[1]
        # the tower runs every tile slot, the padding ones too; the text holds one <|image|> token per image
        pixels = torch.zeros(batch, images, most, vision.num_channels, tile, tile)
        extra["aspect_ratio_ids"] = torch.full((batch, images), [list(r) for r in vision.supported_aspect_ratios]
                                               .index(ratio) + 1)
        extra["aspect_ratio_mask"] = (torch.arange(most) < tiles).long().expand(batch, images, most).clone()
        per_image = 1
        image_ids = [config.image_token_index]
        assumed.update(image_size=f"{width}x{height}", tiles=f"{ratio[1]}x{ratio[0]} of {tile}x{tile}",
                       tile_slots=most)
    elif model_type == "fuyu":  # no tower: each patch of the (scaled-down) image, flattened, is a token
        patch = config.patch_size
        height, width = image_size or (448, 448)
        if height > FUYU_CANVAS[0] or width > FUYU_CANVAS[1]:
            scale = min(FUYU_CANVAS[0] / height, FUYU_CANVAS[1] / width)
            height, width = int(height * scale), int(width * scale)
        rows, cols = math.ceil(height / patch), math.ceil(width / patch)
        per_image = rows * cols
        pixels = torch.zeros(batch, images * per_image, config.num_channels * patch * patch)
        image_ids = ([config.image_token_id] * cols + [low]) * rows  # a newline token ends each row
        assumed.update(image_size=f"{(image_size or (448, 448))[1]}x{(image_size or (448, 448))[0]}",
                       patches=f"{cols}x{rows} of {patch}x{patch}")
    elif model_type in ("llava_next", "llava_onevision"):  # anyres: the whole image and the tiles of a grid
        from transformers.image_processing_utils import select_best_resolution

        side = vision.image_size
        height, width = image_size or (448, 448)
        best = select_best_resolution((height, width), config.image_grid_pinpoints)
        patches = side // vision.patch_size
        onevision = model_type == "llava_onevision"
        most = int(config.vision_aspect_ratio.removeprefix("anyres_max_")) if onevision else None
        whole = patches**2 + (1 if config.vision_feature_select_strategy == "full" and not onevision else 0)
        per_image = whole + _anyres_tokens(height, width, best, side, patches, most)
        tiles = 1 + (best[0] // side) * (best[1] // side)
        pixels = torch.zeros(batch * images, tiles, vision.num_channels, side, side)
        extra["image_sizes"] = torch.tensor([[height, width]] * (batch * images))
        image_ids = [config.image_token_index] * per_image
        assumed.update(image_size=f"{width}x{height}", grid=f"{best[1] // side}x{best[0] // side} of {side}x{side}")
    elif model_type == "internvl":  # tiles of the tower's size, each pooled by pixel shuffle to a fixed count
        side = vision.image_size[0] if isinstance(vision.image_size, list | tuple) else vision.image_size
        patch = vision.patch_size[0] if isinstance(vision.patch_size, list | tuple) else vision.patch_size
        height, width = image_size or (448, 448)
        tiles = _internvl_tiles(height, width, side, *INTERNVL_TILES)
        per_tile = int((side // patch) ** 2 * config.downsample_ratio**2)
        per_image = tiles * per_tile
        pixels = torch.zeros(batch * images * tiles, vision.num_channels, side, side)
        image_ids = [config.image_token_id] * per_image
        assumed.update(image_size=f"{width}x{height}", tiles=tiles, tokens_per_tile=per_tile,
                       tiling="{}-{} tiles and a thumbnail".format(*INTERNVL_TILES))
    elif model_type in ("idefics3", "smolvlm"):  # tiles of the tower's size, each pooled to a fixed count of tokens
        tile = vision.image_size
        height, width = image_size or (448, 448)
        tiles = _idefics3_tiles(height, width, tile)
        per_tile = (tile // vision.patch_size) ** 2 // config.scale_factor**2
        per_image = tiles * per_tile
        # real pixels: the model tells padding images from real ones by their values
        pixels = torch.ones(batch, images * tiles, vision.num_channels, tile, tile)
        extra["pixel_attention_mask"] = torch.ones(batch, images * tiles, tile, tile, dtype=torch.bool)
        image_ids = [config.image_token_id] * per_image
        assumed.update(image_size=f"{width}x{height}", tiles=tiles, tokens_per_tile=per_tile)
    elif model_type == "paligemma":  # every image resized to the tower's size, one token per patch, then the text
        side = vision.image_size
        per_image = (side // vision.patch_size) ** 2
        pixels = torch.zeros(batch * images, vision.num_channels, side, side)
        image_ids = [config.image_token_index] * per_image
        assumed.update(image_size=f"{side}x{side} (the processor's resize)", patch=vision.patch_size)
    else:  # gemma3: every image is resized to the tower's size and pooled to mm_tokens_per_image
        side, per_image = vision.image_size, config.mm_tokens_per_image
        pixels = torch.zeros(batch * images, vision.num_channels, side, side)
        image_ids = [config.boi_token_index, *[config.image_token_index] * per_image, config.eoi_token_index]
        assumed.update(image_size=f"{side}x{side} (the processor's resize)", tokens_per_image=per_image)
    used = images * len(image_ids)
    if used >= seq:
        raise UsageError(f"--seq {seq} leaves no room for text: {images} image(s) take {used} tokens",
                         hint=f"give --seq above {used}")
    rows = []
    for _ in range(batch):
        rows.append([*image_ids * images, *torch.randint(low, high, (seq - used,)).tolist()])
    ids = torch.tensor(rows)
    tensors = {"input_ids": ids, "labels": ids, "pixel_values": pixels, **extra}
    if model_type in QWEN_BOUNDS:
        tensors["mm_token_type_ids"] = (ids == config.image_token_id).long()
    if model_type == "gemma3":
        tensors["token_type_ids"] = (ids == config.image_token_index).long()
    if model_type == "mllama":  # each image's text attends to its tiles from the image's token on
        mask = torch.zeros(batch, seq, images, vision.max_num_tiles, dtype=torch.long)
        for i in range(images):
            mask[:, i:, i, :tiles] = 1
        tensors["cross_attention_mask"] = mask
    if model_type == "paligemma":  # the prefix (image tokens) attends both ways; the rest is the suffix, trained
        tensors["token_type_ids"] = (ids != config.image_token_index).long()
    return StepInputs(tensors, image_tokens=per_image, assumed=assumed,
                      real=("pixel_values",) if model_type in ("idefics3", "smolvlm") else ())


def _text_at_top(config: Any, model_type: str, *, batch: int, seq: int, images: int, low: int,
                 high: int) -> StepInputs:
    """GIT: one image, resized to the tower's size, its patches and class token put before the text by the model
    (counted in ``seq``). Idefics: ``images`` (at least 1) of the tower's size, read through the gated cross-
    attention layers (the perceiver's latents, or the patches and class token, per image), every text token
    attending to them; the text is ``seq`` tokens."""
    import torch

    vision = config.vision_config
    side = vision.image_size
    patches = (side // vision.patch_size) ** 2 + 1
    if model_type == "git":
        if images > 1:
            raise UsageError(f"--images {images} on git: GIT reads one image per sequence", hint="give --images 1")
        if seq <= patches:
            raise UsageError(f"--seq {seq} on git: its image alone is {patches} tokens",
                             hint=f"give --seq above {patches}")
        ids = torch.randint(low, high, (batch, seq - patches))
        return StepInputs({"input_ids": ids, "labels": ids, "pixel_values": torch.zeros(batch, 3, side, side)},
                          image_tokens=patches, images=1,
                          assumed={"images_per_sequence": "1 (its forward needs the image)",
                                   "image_size": f"{side}x{side}"})
    images = max(images, 1)
    latents = config.perceiver_config.resampler_n_latents if config.use_resampler else patches
    ids = torch.randint(low, high, (batch, seq))
    return StepInputs({"input_ids": ids, "labels": ids, "pixel_values": torch.zeros(batch, images, 3, side, side),
                       "image_attention_mask": torch.ones(batch, seq, images, dtype=torch.long)},
                      image_tokens=latents, images=images,
                      assumed={"images_per_sequence": images, "image_size": f"{side}x{side}",
                               "cross_attention": "every text token attends to the images"})


def _encoder_decoder(config: Any, model_type: str, *, batch: int, seq: int, images: int,
                     image_size: tuple[int, int] | None, low: int, high: int) -> StepInputs:
    """A step of an encoder-decoder family: ``seq`` target tokens for the decoder (labels), the image on the
    encoder side. BLIP, Pix2Struct and vision-encoder-decoder models read one image per sequence, always (their
    forward needs it); Florence-2's text encoder reads the image's tokens and a short prompt."""
    import torch

    if images > 1:
        raise UsageError(f"--images {images} on {model_type}: its encoder reads one image per sequence",
                         hint="give --images 1 (or leave it out)")
    target = torch.randint(low, high, (batch, seq))
    assumed: dict[str, Any] = {"target_tokens": seq}
    if model_type in IMAGE_NEEDED:
        images = 1
        assumed["images_per_sequence"] = "1 (its forward needs the image)"
    if model_type == "pix2struct":  # patches of the resized image, each with its row and column, up to max_patches
        vision = config.vision_config
        patches = PIX2STRUCT_MAX_PATCHES
        side = int(math.sqrt(patches))
        rows = torch.arange(patches) // side + 1
        flat = torch.zeros(batch, patches, 2 + vision.patch_embed_hidden_size)
        flat[:, :, 0], flat[:, :, 1] = rows, torch.arange(patches) % side + 1
        assumed.update(max_patches=patches)
        return StepInputs({"flattened_patches": flat, "attention_mask": torch.ones(batch, patches),
                           "labels": target}, image_tokens=patches, assumed=assumed,
                          real=("flattened_patches", "attention_mask"), images=images)
    if model_type in ("blip", "vision-encoder-decoder"):
        vision = config.vision_config if model_type == "blip" else config.encoder
        side = vision.image_size if isinstance(vision.image_size, (list, tuple)) else (vision.image_size,) * 2
        pixels = torch.zeros(batch, getattr(vision, "num_channels", 3), *side)
        tensors = {"pixel_values": pixels, "labels": target}
        if model_type == "blip":
            tensors["input_ids"] = target  # BLIP's captioning: the decoder's input is the caption
        assumed.update(image_size=f"{side[1]}x{side[0]}")
        patches = (side[0] // vision.patch_size) * (side[1] // vision.patch_size)
        depths = getattr(vision, "depths", None)  # a Swin tower (Donut) halves each side between its stages
        tokens = patches // 4 ** (len(depths) - 1) if depths else patches + 1  # a ViT's: and its class token
        return StepInputs(tensors, image_tokens=tokens, assumed=assumed, images=images)
    if model_type == "udop":  # a document's words with their boxes through the encoder (and the page's patches)
        boxes = torch.rand(batch, seq, 2) * 0.8
        tensors = {"input_ids": torch.randint(low, high, (batch, seq)), "labels": target,
                   "bbox": torch.cat([boxes, boxes + 0.1], -1)}
        assumed.update(document_tokens=seq)
        if images:  # its page's patches join the words by a boolean mask made from the image's features
            raise UsageError("--images on udop: UDOP merges the page's patches with the words through a mask it makes "
                             "from the image's features, which the simulation cannot follow yet",
                             hint="leave --images out: the step then holds the document's words with their boxes")
        return StepInputs(tensors, assumed=assumed, real=("bbox",))
    # Florence-2: the image's tokens (the DaViT strides' product per side, squared, and one pooled token), a
    # prompt, through the BART encoder; the target through the decoder
    vision = config.vision_config
    stride = math.prod(vision.patch_stride)
    if images:
        asked = image_size or (FLORENCE2_SIDE, FLORENCE2_SIDE)
        side = FLORENCE2_SIDE  # the processor resizes every image to this square
        per_image = (side // stride) ** 2 + 1
        ids = [config.image_token_id] * per_image + torch.randint(low, high, (PROMPT_TOKENS,)).tolist()
        assumed.update(images_per_sequence=1, image_size=f"{asked[1]}x{asked[0]}", resized=f"{side}x{side}",
                       prompt_tokens=PROMPT_TOKENS)
        tensors = {"input_ids": torch.tensor([ids] * batch), "labels": target,
                   "pixel_values": torch.zeros(batch, 3, side, side)}
        return StepInputs(tensors, image_tokens=per_image, assumed=assumed, images=1)
    assumed["prompt_tokens"] = PROMPT_TOKENS
    return StepInputs({"input_ids": torch.randint(low, high, (batch, PROMPT_TOKENS)), "labels": target},
                      assumed=assumed)


__all__ = ["ENCODER_DECODER", "IMAGE_FAMILIES", "QWEN_MAX_PIXELS", "QWEN_MIN_PIXELS", "TEXT_AT_TOP", "StepInputs",
           "step_inputs"]
