"""Real 3 T scans of the NIST/ISMRM system phantom: DICOM conversion, sphere positions, reference values."""
