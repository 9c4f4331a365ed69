"""DICOM frames: ultrasound and endoscopy cine loops (multi-frame), single frames and folders of one
series, with their frame timing and physical pixel size (`pip install 'llm4seg[dicom]'`: pydicom 3
and the pylibjpeg codecs). The one owner of how a DICOM becomes frames: the runtime's video
sources and the core's dataset folders both read through it (light on purpose: numpy at module
level, pydicom inside). `source` reads one file, `series` a folder, `geometry` the tissue regions
and pixel size, `files` which files are DICOM."""

from llm4seg.dicom.files import DICOM_SUFFIXES, dicom_files_in, is_dicom_file
from llm4seg.dicom.geometry import frame_geometry, physical_size, tissue_mask, ultrasound_regions
from llm4seg.dicom.series import DicomSeriesSource, open_dicom
from llm4seg.dicom.source import PHOTOMETRIC, DicomSource

__all__ = ["DICOM_SUFFIXES", "DicomSeriesSource", "DicomSource", "PHOTOMETRIC", "dicom_files_in", "frame_geometry",
           "is_dicom_file", "open_dicom", "physical_size", "tissue_mask", "ultrasound_regions"]
