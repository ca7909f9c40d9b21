"""WIDER FACE datasets for mmdet 3.x: the official layout and the RetinaFace/SCRFD labelv2 layout.

Both register in `mmdet.registry.DATASETS` with one class, 'face'. Every data_info has img_id,
img_path, height, width and instances (bbox x1 y1 x2 y2, bbox_label 0, ignore_flag, keypoints (5, 3)
x y visible). Bad annotations and missing images raise UserError while the dataset is built.
"""

from __future__ import annotations

import os.path as osp

from mmdet.datasets import BaseDetDataset
from mmdet.registry import DATASETS
from PIL import Image

from scrfd_search.data import transforms as _transforms  # noqa: F401  (registers the face transforms)
from scrfd_search.data.annotations import ImageAnnotation, parse_retinaface_txt, parse_wider_txt
from scrfd_search.errors import UserError

FACE_METAINFO = {"classes": ("face",), "palette": [(0, 255, 0)]}


class _FaceDataset(BaseDetDataset):
    """Shared logic: build data_infos from parsed records, check images, keep empty images in test."""

    METAINFO = FACE_METAINFO

    def __init__(self, *args, min_size: float | None = None, **kwargs) -> None:
        self.min_size = min_size
        self._image_sizes: dict[str, tuple[int, int]] = {}
        super().__init__(*args, **kwargs)

    def parse_annotations(self) -> list[ImageAnnotation]:
        """Parse self.ann_file into per-image records (format-specific)."""
        raise NotImplementedError

    def load_data_list(self) -> list[dict]:
        """Parsed records -> mmdet data_infos; a listed image that does not exist is a UserError."""
        img_root = self.data_prefix.get("img", "")
        data_list = []
        for record in self.parse_annotations():
            img_path = osp.join(img_root, record.name)
            if not osp.isfile(img_path):
                raise UserError(f"{self.ann_file}:{record.line}: image not found: {img_path}")
            data_list.append(
                dict(
                    img_id=record.name,
                    img_path=img_path,
                    height=record.height,
                    width=record.width,
                    instances=record.instances,
                )
            )
        return data_list

    def filter_data(self) -> list[dict]:
        """In training drop images without a valid face (as the reference does); test keeps all."""
        filter_empty = (self.filter_cfg or {}).get("filter_empty_gt", True)
        if self.test_mode or not filter_empty:
            return self.data_list
        return [info for info in self.data_list if any(not i["ignore_flag"] for i in info["instances"])]

    def get_data_info(self, idx: int) -> dict:
        """The data_info, with width/height read from the image header when the format lacks them."""
        info = super().get_data_info(idx)
        if info.get("height") is None or info.get("width") is None:
            info["width"], info["height"] = self.image_size(info["img_path"])
        return info

    def image_size(self, img_path: str) -> tuple[int, int]:
        """(width, height) from the image header only (PIL opens lazily), cached."""
        if img_path not in self._image_sizes:
            try:
                with Image.open(img_path) as img:
                    self._image_sizes[img_path] = img.size
            except OSError as exc:
                raise UserError(f"{img_path}: cannot read image header ({exc})") from None
        return self._image_sizes[img_path]

    def get_cat_ids(self, idx: int) -> list[int]:
        """Category ids of the idx-th image's faces (all 0)."""
        return [i["bbox_label"] for i in self.get_data_info(idx)["instances"]]


@DATASETS.register_module()
class WiderFaceDataset(_FaceDataset):
    """Official layout: data_root with WIDER_{split}/images/<event>/<image>.jpg and
    wider_face_split/wider_face_{split}_bbx_gt.txt (ann_file relative to data_root,
    data_prefix=dict(img='WIDER_{split}/images/')). Invalid faces are kept with ignore_flag 1."""

    def __init__(self, *args, data_prefix: dict | None = None, **kwargs) -> None:
        super().__init__(*args, data_prefix=dict(data_prefix or {"img": ""}), **kwargs)

    def parse_annotations(self) -> list[ImageAnnotation]:
        """Parse the official bbx_gt text file."""
        return parse_wider_txt(self.ann_file, self.min_size)


@DATASETS.register_module()
class RetinaFaceDataset(_FaceDataset):
    """RetinaFace/SCRFD layout: <split>/labelv2.txt with images under <split>/images/ (the default
    when data_prefix has no 'img'), boxes x1 y1 x2 y2 with 5 landmarks or an ignore flag."""

    def __init__(self, *args, ann_file: str = "", data_prefix: dict | None = None, **kwargs) -> None:
        prefix = dict(data_prefix or {})
        if not prefix.get("img"):
            prefix["img"] = osp.join(osp.dirname(ann_file), "images") + "/"
        super().__init__(*args, ann_file=ann_file, data_prefix=prefix, **kwargs)

    def parse_annotations(self) -> list[ImageAnnotation]:
        """Parse labelv2.txt."""
        return parse_retinaface_txt(self.ann_file, self.min_size)
