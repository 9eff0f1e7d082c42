"""Hospital integration: a PACS over DICOMweb."""
