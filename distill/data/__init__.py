from .images import ImageSet, load_images, to_uint8_images

__all__ = ["ImageSet", "load_images", "to_uint8_images"]
