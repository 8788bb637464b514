"""instructions"""
