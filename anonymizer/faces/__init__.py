"""Face pipeline shared by every engine: detection, landmarks, alignment, regions, paste-back, checks."""
