"""Detection datasets: COCO json (canonical), Pascal VOC folders, and the synthetic demo set."""
