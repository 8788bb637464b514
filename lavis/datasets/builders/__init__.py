"""datasets/builders"""
