"""The itslearning target: IMS Enterprise files."""
