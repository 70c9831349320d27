import cv2
import numpy as np
import pytest
from scratchdet.train.data.load import load_dataset
from scratchdet.train.data.records import DatasetError

XML = """<annotation><size><width>60</width><height>40</height><depth>3</depth></size>
<object><name>dog</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
<object><name>cat</name><bndbox><xmin>30</xmin><ymin>5</ymin><xmax>70</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""


def make_voc(root):
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    (root / "Annotations" / "0001.xml").write_text(XML)
    cv2.imwrite(str(root / "JPEGImages" / "0001.jpg"), np.zeros((40, 60, 3), np.uint8))
    (root / "ImageSets" / "Main" / "train.txt").write_text("0001\n")
    return root


def test_voc_boxes_become_zero_based_and_are_clipped(tmp_path):
    data = load_dataset(make_voc(tmp_path / "voc"), "train")
    assert data.class_names == ["cat", "dog"]
    (record,) = data.records
    np.testing.assert_allclose(record.boxes, [[0, 0, 20, 30], [29, 4, 60, 20]])
    assert record.labels.tolist() == [1, 0]
    assert record.difficult.tolist() == [True, False]
    assert data.issues["boxes clipped to the image"] == 1


def test_malformed_xml_names_the_file(tmp_path):
    root = make_voc(tmp_path / "voc")
    (root / "Annotations" / "0001.xml").write_text("<annotation><size>")
    with pytest.raises(DatasetError, match="0001.xml: malformed VOC annotation"):
        load_dataset(root, "train")
