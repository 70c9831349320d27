// Test stand-in for DeepStream's nvdsinfer.h + nvdsinfer_custom_impl.h: only the types a bounding-box
// parser uses, with the members in the order of DeepStream's public headers (sources/includes/nvdsinfer.h
// and nvdsinfer_custom_impl.h, DeepStream 6.x/7.x), so the shipped parser compiles here unchanged.
#pragma once
#include <vector>

#define NVDSINFER_MAX_DIMS 8

typedef struct {
    unsigned int numDims;
    unsigned int d[NVDSINFER_MAX_DIMS];
    unsigned int numElements;
} NvDsInferDims;

typedef enum { FLOAT = 0, HALF = 1, INT8 = 2, INT32 = 3 } NvDsInferDataType;

typedef struct {
    NvDsInferDataType dataType;
    NvDsInferDims inferDims;
    int bindingIndex;
    const char *layerName;
    void *buffer;
    int isInput;
} NvDsInferLayerInfo;

typedef struct {
    unsigned int width;
    unsigned int height;
    unsigned int channels;
} NvDsInferNetworkInfo;

typedef struct {
    unsigned int classId;
    float left;
    float top;
    float width;
    float height;
    float detectionConfidence;
} NvDsInferObjectDetectionInfo;

typedef struct {
    unsigned int numClassesConfigured;
    std::vector<float> perClassPreclusterThreshold;
    std::vector<float> perClassPostclusterThreshold;
} NvDsInferParseDetectionParams;

typedef bool (*NvDsInferParseCustomFunc)(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                         NvDsInferNetworkInfo const &networkInfo,
                                         NvDsInferParseDetectionParams const &detectionParams,
                                         std::vector<NvDsInferObjectDetectionInfo> &objectList);

// DeepStream's macro checks the function's signature against NvDsInferParseCustomFunc at compile time.
#define CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(customParseFunc) \
    static NvDsInferParseCustomFunc const check_##customParseFunc __attribute__((unused)) = customParseFunc;
