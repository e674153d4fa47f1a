"""Synthetic multi-person scenes made with the bundled Anny body model (``lighthmr synth``).

- scene.py: scene sampling and rendering (SceneGenerator -> RenderedScene, generate_scenes, SynthConfig),
  with the plain-torch z-buffer rasteriser of lighthmr_ros.raster (shared with the overlay, depth fusion)
- poses.py: random phenotypes and poses within joint limits
- backgrounds.py: photos and textures shipped in installed packages
- format.py: the on-disk format (documented there), its writer and its readers (load_scene, read_depth)
"""
from lighthmr_ros.synth.format import list_scenes, load_scene, read_depth, read_meta
from lighthmr_ros.synth.scene import RenderedScene, SceneGenerator, SynthConfig, generate_scenes

__all__ = ["RenderedScene", "SceneGenerator", "SynthConfig", "generate_scenes", "list_scenes", "load_scene",
           "read_depth", "read_meta"]
