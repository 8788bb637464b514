"""models/qformer"""
