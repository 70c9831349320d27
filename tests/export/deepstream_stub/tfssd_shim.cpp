// Calls DeepStream's own NvDsInferParseCustomTfSSD (compiled by the test from the SDK's source where one is
// installed) the way nvinfer does: one frame's output slices, float32 only, from plain C arguments for ctypes.
#include <cstring>
#include <vector>

#include "nvdsinfer_custom_impl.h"

extern "C" bool NvDsInferParseCustomTfSSD(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                          NvDsInferNetworkInfo const &networkInfo,
                                          NvDsInferParseDetectionParams const &detectionParams,
                                          std::vector<NvDsInferObjectDetectionInfo> &objectList);

static NvDsInferLayerInfo layer(const char *name, void *buffer, unsigned int rows, unsigned int columns) {
    NvDsInferLayerInfo info{};
    info.dataType = FLOAT;
    info.inferDims.numDims = columns > 1 ? 2 : 1;
    info.inferDims.d[0] = rows;
    info.inferDims.d[1] = columns > 1 ? columns : 0;
    info.inferDims.numElements = rows * columns;
    info.layerName = name;
    info.buffer = buffer;
    return info;
}

// Returns the number of objects written to out (rows of classId, left, top, width, height, confidence),
// or -1 when the parser returned false.
extern "C" int tfssd_parse(float *count, float *boxes, float *scores, float *classes, unsigned int rows,
                           unsigned int width, unsigned int height, unsigned int numClasses, const float *thresholds,
                           float *out) {
    std::vector<NvDsInferLayerInfo> layers{layer("detection_classes", classes, rows, 1),
                                           layer("num_detections", count, 1, 1),
                                           layer("detection_scores", scores, rows, 1),
                                           layer("detection_boxes", boxes, rows, 4)};
    NvDsInferNetworkInfo network{width, height, 3};
    NvDsInferParseDetectionParams params;
    params.numClassesConfigured = numClasses;
    params.perClassPreclusterThreshold.assign(thresholds, thresholds + numClasses);
    params.perClassPostclusterThreshold.assign(numClasses, 0.0f);
    std::vector<NvDsInferObjectDetectionInfo> objects;
    if (!NvDsInferParseCustomTfSSD(layers, network, params, objects)) {
        return -1;
    }
    for (size_t i = 0; i < objects.size(); ++i) {
        float row[6] = {static_cast<float>(objects[i].classId), objects[i].left, objects[i].top, objects[i].width,
                        objects[i].height, objects[i].detectionConfidence};
        std::memcpy(out + 6 * i, row, sizeof(row));
    }
    return static_cast<int>(objects.size());
}
