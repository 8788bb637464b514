"""models/blip2"""
