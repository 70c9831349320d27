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


def test_class_name_typo_is_reported_not_made_a_class(tmp_path):
    # Before: 'dgo' silently became a third class.
    root = make_voc(tmp_path / "voc")
    dog = XML[XML.index("<object>"):XML.index("</object>") + 9]
    typo = XML.replace("</annotation>", dog * 10 + "</annotation>").replace("dog</name><diff", "dgo</name><diff", 1)
    (root / "Annotations" / "0002.xml").write_text(typo)
    cv2.imwrite(str(root / "JPEGImages" / "0002.jpg"), np.zeros((40, 60, 3), np.uint8))
    (root / "ImageSets" / "Main" / "train.txt").write_text("0001\n0002\n")
    with pytest.raises(DatasetError, match=r"Annotations: class 'dgo' \(1 boxes\) looks like a typo of 'dog'"):
        load_dataset(root, "train")
    (root / "classes.txt").write_text("cat\ndog\ndgo\n")  # an explicit class list keeps both
    assert load_dataset(root, "train").class_names == ["cat", "dog", "dgo"]


@pytest.mark.parametrize("xml, message", [
    (XML.replace("<xmin>1</xmin>", "<xmin>nan</xmin>"), r"0001.xml: object 0 \(dog\) has a non-finite box"),
    (XML.replace("<width>60</width>", "<width>0</width>"), "0001.xml: size 0x40 is not positive"),
    (XML.replace("<xmax>20</xmax>", "<xmax>-5</xmax>"), "0001.xml: object 0 .* xmax < xmin"),
    (XML.replace("<name>cat</name>", "<name> </name>"), "0001.xml: object 1 has an empty name"),
], ids=["nan", "zero size", "inverted", "empty name"])
def test_bad_voc_objects_are_named_errors(tmp_path, xml, message):
    root = make_voc(tmp_path / "voc")
    (root / "Annotations" / "0001.xml").write_text(xml)
    with pytest.raises(DatasetError, match=message):
        load_dataset(root, "train")
