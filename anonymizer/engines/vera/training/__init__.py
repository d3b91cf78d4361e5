"""VerA training: the GAN loop (losses, discriminator, distributed data parallel), its data, and the parser
and encoder pre-training. Inference (engine, generator, inversion, checkpoint loading) never imports it."""
