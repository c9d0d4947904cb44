"""Everything that knows whether mdistiller is installed: the adapter, the stand-ins used without it,
plug-in loading and the registration of this project's methods into mdistiller."""
