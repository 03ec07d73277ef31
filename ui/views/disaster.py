from ui.text_page import render

render(
    "disaster",
    "Disaster tweet detector",
    {
        "Wildfire": "Forest fire near La Ronge Sask. Canada, residents asked to evacuate",
        "Flood": "Flash flood warning for the river valley tonight, roads already under water #flood",
        "Not one": "This new album is fire, I'm dying, absolute disaster of a good time lol",
    },
)
