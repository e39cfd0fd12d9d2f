"""Bridges to other frameworks, each imported only by the users of that framework (`mmdet`: mmdetection)."""
