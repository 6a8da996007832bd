"""Map outputs and map services: COG layout and writing, TiTiler (XYZ) and MapProxy (WMS/WMTS)."""
