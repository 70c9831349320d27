// nvinfer bounding-box parser for ScratchDet Edge models (DeepStream 6.x/7.x, stock SDK, no patching).
//
// The model's four outputs follow the project's ONNX contract: num_dets int32 [B,1], det_boxes float32
// [B,K,4] x1,y1,x2,y2 in network-input pixels, det_scores float32 [B,K], det_classes int32 [B,K] 0-based.
// None of the stock parsers in libnvds_infercustomparser.so reads that as is: NvDsInferParseCustomBatchedNMSTLT
// takes outputs by index, float32 class ids and boxes normalised to [0,1] (it multiplies by the network
// size), and applies class 0's threshold to every class; NvDsInferParseCustomTfSSD wants float32 count and
// y1,x1,y2,x2 normalised boxes. This parser reads the tensors by name and type, so binding order does not
// matter, and applies each class's pre-cluster-threshold.
//
// nvinfer calls it once per frame with that frame's slice of each output (inferDims without the batch axis).
// Build on the device: make -C deepstream   (see the Makefile for the include paths).

#include <algorithm>
#include <cstring>
#include <iostream>
#include <vector>

#include "nvdsinfer_custom_impl.h"

namespace {

const NvDsInferLayerInfo *findOutput(std::vector<NvDsInferLayerInfo> const &layers, const char *name,
                                     NvDsInferDataType type) {
    for (auto const &layer : layers) {
        if (layer.layerName == nullptr || std::strcmp(layer.layerName, name) != 0) {
            continue;
        }
        if (layer.dataType != type) {
            std::cerr << "ScratchDet parser: output '" << name << "' has data type " << layer.dataType
                      << ", expected " << type << " (0 FLOAT, 3 INT32)" << std::endl;
            return nullptr;
        }
        return &layer;
    }
    std::cerr << "ScratchDet parser: the model has no output '" << name
              << "' (expected num_dets, det_boxes, det_scores, det_classes)" << std::endl;
    return nullptr;
}

float clip(float value, float low, float high) { return std::max(low, std::min(value, high)); }

}  // namespace

extern "C" bool NvDsInferParseCustomScratchDet(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                               NvDsInferNetworkInfo const &networkInfo,
                                               NvDsInferParseDetectionParams const &detectionParams,
                                               std::vector<NvDsInferObjectDetectionInfo> &objectList) {
    const NvDsInferLayerInfo *count = findOutput(outputLayersInfo, "num_dets", INT32);
    const NvDsInferLayerInfo *boxes = findOutput(outputLayersInfo, "det_boxes", FLOAT);
    const NvDsInferLayerInfo *scores = findOutput(outputLayersInfo, "det_scores", FLOAT);
    const NvDsInferLayerInfo *classes = findOutput(outputLayersInfo, "det_classes", INT32);
    if (count == nullptr || boxes == nullptr || scores == nullptr || classes == nullptr) {
        return false;
    }
    const int capacity = static_cast<int>(scores->inferDims.numElements);  // K rows per frame
    const int rows = std::max(0, std::min(static_cast<const int *>(count->buffer)[0], capacity));
    const float *box = static_cast<const float *>(boxes->buffer);
    const float *score = static_cast<const float *>(scores->buffer);
    const int *classId = static_cast<const int *>(classes->buffer);
    const float right = static_cast<float>(networkInfo.width) - 1.0f;
    const float bottom = static_cast<float>(networkInfo.height) - 1.0f;
    const auto &thresholds = detectionParams.perClassPreclusterThreshold;
    const int configured = static_cast<int>(std::min<size_t>(detectionParams.numClassesConfigured, thresholds.size()));

    for (int i = 0; i < rows; ++i) {
        const int id = classId[i];
        if (id < 0 || id >= configured || score[i] < thresholds[id]) {
            continue;
        }
        const float x1 = clip(box[4 * i + 0], 0.0f, right);
        const float y1 = clip(box[4 * i + 1], 0.0f, bottom);
        const float x2 = clip(box[4 * i + 2], 0.0f, right);
        const float y2 = clip(box[4 * i + 3], 0.0f, bottom);
        if (x2 <= x1 || y2 <= y1) {
            continue;
        }
        NvDsInferObjectDetectionInfo object{};
        object.classId = static_cast<unsigned int>(id);
        object.left = x1;
        object.top = y1;
        object.width = x2 - x1;
        object.height = y2 - y1;
        object.detectionConfidence = score[i];
        objectList.push_back(object);
    }
    return true;
}

CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(NvDsInferParseCustomScratchDet);
