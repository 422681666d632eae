// Canvas labels (Cesium draws them itself) name the CJK font first, as the page's CSS does:
// a label in Chinese drawn with a Latin-only font shows boxes.
export const LABEL_FONT = "13px 'Noto Sans CJK SC', 'Noto Sans SC', 'Liberation Sans', sans-serif";
