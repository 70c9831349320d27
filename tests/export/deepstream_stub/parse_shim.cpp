// Calls the shipped parser the way nvinfer does (one frame's output slices, layers in a given order) from
// plain C arguments, so a test can drive it through ctypes with ONNX Runtime's outputs.
#include <cstring>
#include <vector>

#include "nvdsinfer_custom_impl.h"

extern "C" bool NvDsInferParseCustomScratchDet(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                               NvDsInferNetworkInfo const &networkInfo,
                                               NvDsInferParseDetectionParams const &detectionParams,
                                               std::vector<NvDsInferObjectDetectionInfo> &objectList);

static NvDsInferLayerInfo layer(const char *name, NvDsInferDataType type, void *buffer, unsigned int elements) {
    NvDsInferLayerInfo info{};
    info.dataType = type;
    info.inferDims.numDims = 1;
    info.inferDims.d[0] = elements;
    info.inferDims.numElements = elements;
    info.layerName = name;
    info.buffer = buffer;
    return info;
}

// Returns the number of objects written to out (rows of classId, left, top, width, height, confidence),
// or -1 when the parser returned false. order: 4 indices into (num_dets, det_boxes, det_scores, det_classes).
extern "C" int scratchdet_parse(int *numDets, float *boxes, float *scores, int *classes, unsigned int rows,
                                const int *order, unsigned int width, unsigned int height, unsigned int numClasses,
                                const float *thresholds, float *out) {
    NvDsInferLayerInfo all[4] = {layer("num_dets", INT32, numDets, 1), layer("det_boxes", FLOAT, boxes, rows * 4),
                                 layer("det_scores", FLOAT, scores, rows), layer("det_classes", INT32, classes, rows)};
    std::vector<NvDsInferLayerInfo> layers;
    for (int i = 0; i < 4; ++i) {
        layers.push_back(all[order[i]]);
    }
    NvDsInferNetworkInfo network{width, height, 3};
    NvDsInferParseDetectionParams params;
    params.numClassesConfigured = numClasses;
    params.perClassPreclusterThreshold.assign(thresholds, thresholds + numClasses);
    params.perClassPostclusterThreshold.assign(numClasses, 0.0f);
    std::vector<NvDsInferObjectDetectionInfo> objects;
    if (!NvDsInferParseCustomScratchDet(layers, network, params, objects)) {
        return -1;
    }
    for (size_t i = 0; i < objects.size(); ++i) {
        float row[6] = {static_cast<float>(objects[i].classId), objects[i].left, objects[i].top, objects[i].width,
                        objects[i].height, objects[i].detectionConfidence};
        std::memcpy(out + 6 * i, row, sizeof(row));
    }
    return static_cast<int>(objects.size());
}
