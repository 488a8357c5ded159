"""MONAI integration: bundle training with monai.fl (ClientAlgoExecutor), the bundle persistor, Ignite stats."""
